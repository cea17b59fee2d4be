//! rustls for the one HTTPS listener.
//!
//! The server certificate, the client CA bundle and the CRLs are [`TlsMaterial`], loaded from
//! files in one go and held by [`ReloadableTls`], which the listener's `ServerConfig` consults
//! on every handshake (certificate resolver and client verifier). A reload (file change or
//! SIGHUP) swaps the material atomically: new handshakes use it, open connections stay. A
//! broken, half-written or expired replacement keeps the old material and is logged and counted.
//! After a change of trust (CA bundle or CRLs), resumption is refused: the session cache is
//! replaced, so a resumed session cannot skip the new checks (see [`ResumptionGuard`]).
//!
//! `on_connect` parses the peer's leaf certificate once per connection.

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
    WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as TlsError, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::configuration::{ClientAuth, TlsSettings};
use crate::error::StartupError;
use crate::identity::{ConnectionIdentity, PeerCertificate};
use crate::telemetry::Metrics;

/// The one crypto provider of the workspace (ring), passed explicitly everywhere.
///
/// Cipher suites: AES-128-GCM with SHA-256 first (the listener prefers it over the client's
/// order, see `server_config`). SHA-256 runs on the CPU's SHA extensions where SHA-384 does not,
/// and the key schedule hashes a lot per handshake: measured at 4-5 % of a handshake's CPU.
pub fn provider() -> Arc<CryptoProvider> {
    // aws-lc-rs only for the benchmark's provider comparison (`bench/run.sh --providers`).
    #[cfg(feature = "aws-lc-rs")]
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// Stateless session tickets (12 hours, keys rotated every 6), from the provider in use.
fn new_ticketer() -> Result<Arc<dyn ProducesTickets>, TlsError> {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::Ticketer::new();
    #[cfg(not(feature = "aws-lc-rs"))]
    rustls::crypto::ring::Ticketer::new()
}

/// Private key material must be readable by its owner only; anything else is worth a warning
/// that names the file (the service still starts: the mount may be outside its control).
pub fn warn_if_exposed(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", metadata.permissions().mode() & 0o777),
                "private key material is readable by group or others; chmod 600 it"
            );
        }
    }
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, StartupError> {
    std::fs::read(path).map_err(|source| StartupError::File {
        path: path.to_owned(),
        what,
        source,
    })
}

fn pem_error(path: &Path, what: &'static str, detail: impl fmt::Display) -> StartupError {
    StartupError::Pem {
        path: path.to_owned(),
        what,
        detail: detail.to_string(),
    }
}

/// Reads every certificate of a PEM file, naming the file on any failure.
pub fn load_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, StartupError> {
    let bytes = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, what, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, what, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn load_crls(
    paths: &[PathBuf],
) -> Result<Vec<CertificateRevocationListDer<'static>>, StartupError> {
    const WHAT: &str = "certificate revocation list";
    let mut crls = Vec::new();
    for path in paths {
        let bytes = read_file(path, WHAT)?;
        if bytes.starts_with(b"-----BEGIN") {
            let parsed = CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_error(path, WHAT, e))?;
            if parsed.is_empty() {
                return Err(pem_error(path, WHAT, "no X509 CRL block found"));
            }
            crls.extend(parsed);
        } else {
            // DER: check it parses now rather than in the first handshake.
            use x509_parser::prelude::FromDer;
            x509_parser::revocation_list::CertificateRevocationList::from_der(&bytes)
                .map_err(|e| pem_error(path, WHAT, format!("not a PEM or DER CRL: {e}")))?;
            crls.push(CertificateRevocationListDer::from(bytes));
        }
    }
    Ok(crls)
}

/// The server's certificate chain and key, from PEM files or a PKCS#12 file.
fn load_server_key(
    settings: &TlsSettings,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
        PathBuf,
        PathBuf,
    ),
    StartupError,
> {
    match (&settings.cert_file, &settings.key_file, &settings.pkcs12_file) {
        (Some(cert_file), Some(key_file), None) => {
            let chain = load_certificates(cert_file, "server certificate")?;
            warn_if_exposed(key_file);
            let bytes = read_file(key_file, "server private key")?;
            let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| pem_error(key_file, "server private key", e))?;
            Ok((chain, key, cert_file.clone(), key_file.clone()))
        }
        (None, None, Some(p12)) => {
            const WHAT: &str = "server PKCS#12 file";
            let password_file = settings.pkcs12_password_file.as_ref().ok_or_else(|| {
                StartupError::Settings("tls.pkcs12_file needs tls.pkcs12_password_file (a file holding the password)".into())
            })?;
            let password = std::fs::read_to_string(password_file)
                .map(|p| SecretString::from(p.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|source| StartupError::File { path: password_file.clone(), what: "PKCS#12 password file", source })?;
            warn_if_exposed(p12);
            warn_if_exposed(password_file);
            let bytes = read_file(p12, WHAT)?;
            let store = p12_keystore::KeyStore::from_pkcs12(&bytes, password.expose_secret(), p12_keystore::Pkcs12ImportPolicy::Strict).map_err(|e| {
                pem_error(p12, WHAT, format!("cannot open it with the password from `{}`: {e}", password_file.display()))
            })?;
            let (_, entry) = store
                .private_key_chain()
                .ok_or_else(|| pem_error(p12, WHAT, "it holds no private key with a certificate chain"))?;
            let chain: Vec<CertificateDer<'static>> =
                entry.certs().iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect();
            if chain.is_empty() {
                return Err(pem_error(p12, WHAT, "it holds no certificate"));
            }
            let key = PrivateKeyDer::try_from(entry.key().as_der().to_vec()).map_err(|e| pem_error(p12, WHAT, e))?;
            Ok((chain, key, p12.clone(), p12.clone()))
        }
        _ => Err(StartupError::Settings(
            "set tls.cert_file and tls.key_file (PEM), or tls.pkcs12_file and tls.pkcs12_password_file".into(),
        )),
    }
}

/// A CA of the client bundle, for expiry metrics and warnings.
#[derive(Debug, Clone)]
pub struct CaInfo {
    pub subject: String,
    pub not_after: OffsetDateTime,
}

/// Everything the listener's TLS is made of, loaded and checked together.
pub struct TlsMaterial {
    pub key: Arc<CertifiedKey>,
    pub server_not_after: OffsetDateTime,
    pub server_subject: String,
    pub cas: Vec<CaInfo>,
    verifier: Arc<dyn ClientCertVerifier>,
    /// Digest of the CA bundle and CRL bytes: a change means a change of trust.
    trust_digest: Vec<u8>,
}

impl TlsMaterial {
    pub fn load(
        settings: &TlsSettings,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, StartupError> {
        let (chain, key, cert_path, key_path) = load_server_key(settings)?;
        let leaf = PeerCertificate::from_der(&chain[0])
            .map_err(|detail| pem_error(&cert_path, "server certificate", detail))?;
        if leaf.not_after <= OffsetDateTime::now_utc() {
            return Err(StartupError::CertificateExpired {
                path: cert_path,
                not_after: leaf.not_after.to_string(),
            });
        }
        let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
            TlsError::InconsistentKeys(_) => StartupError::KeyMismatch {
                cert: cert_path.clone(),
                key: key_path.clone(),
            },
            other => pem_error(&key_path, "server private key", other),
        })?;

        let ca_path = &settings.client_ca_file;
        let ca_certs = load_certificates(ca_path, "client CA bundle")?;
        let mut roots = RootCertStore::empty();
        let mut cas = Vec::new();
        for ca in &ca_certs {
            let info = PeerCertificate::from_der(ca)
                .map_err(|d| pem_error(ca_path, "client CA bundle", d))?;
            cas.push(CaInfo {
                subject: info.subject.to_string(),
                not_after: info.not_after,
            });
            roots
                .add(ca.clone())
                .map_err(|e| pem_error(ca_path, "client CA bundle", e))?;
        }
        let crls = load_crls(&settings.crl_files)?;
        let mut trust = ring::digest::Context::new(&ring::digest::SHA256);
        ca_certs.iter().for_each(|c| trust.update(c));
        crls.iter().for_each(|c| trust.update(c));
        // Revocation: the leaf is checked against the CRLs of its issuer. A CA with no CRL file
        // is not checked (unknown status is allowed); an expired CRL fails handshakes (fail
        // closed, as nginx does): renew CRLs before their nextUpdate.
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .with_crls(crls)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status()
                .enforce_revocation_expiration();
        if settings.client_auth == ClientAuth::Optional {
            // A missing certificate passes the handshake (API-key clients); a presented
            // certificate that fails verification still aborts it: no fallback to a key.
            builder = builder.allow_unauthenticated();
        }
        let verifier = builder.build().map_err(|e| {
            StartupError::Tls(format!("client verifier from `{}`: {e}", ca_path.display()))
        })?;
        Ok(Self {
            key: Arc::new(key),
            server_not_after: leaf.not_after,
            server_subject: leaf.subject.to_string(),
            cas,
            verifier,
            trust_digest: trust.finish().as_ref().to_vec(),
        })
    }
}

/// The listener's TLS state, swappable while serving.
pub struct ReloadableTls {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    material: ArcSwap<TlsMaterial>,
    sessions: ArcSwap<ServerSessionMemoryCache>,
    tickets: ArcSwap<Arc<dyn ProducesTickets>>,
    metrics: Arc<Metrics>,
    /// Digest of the bytes of every TLS file as last seen, to notice changes.
    files_digest: std::sync::Mutex<Vec<u8>>,
}

/// How a reload went.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Unchanged,
    Reloaded {
        trust_changed: bool,
    },
    /// The new files are broken; the old material stays in service.
    Rejected(String),
}

const SESSION_CACHE_SIZE: usize = 4096;

impl ReloadableTls {
    pub fn load(settings: &TlsSettings, metrics: Arc<Metrics>) -> Result<Arc<Self>, StartupError> {
        let provider = provider();
        let material = TlsMaterial::load(settings, &provider)?;
        let tls = Arc::new(Self {
            settings: settings.clone(),
            provider,
            material: ArcSwap::from_pointee(material),
            sessions: ArcSwap::new(ServerSessionMemoryCache::new(SESSION_CACHE_SIZE)),
            tickets: ArcSwap::from_pointee(
                new_ticketer().map_err(|e| StartupError::Tls(e.to_string()))?,
            ),
            metrics,
            files_digest: std::sync::Mutex::new(files_digest(settings)),
        });
        tls.publish_expiry();
        Ok(tls)
    }

    pub fn material(&self) -> arc_swap::Guard<Arc<TlsMaterial>> {
        self.material.load()
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The rustls configuration of the listener: TLS 1.3 and 1.2, HTTP/2 and HTTP/1.1 (ALPN is
    /// set by actix); certificate, verifier and session cache all read the current material.
    pub fn server_config(self: &Arc<Self>) -> Result<ServerConfig, StartupError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| StartupError::Tls(e.to_string()))?
            .with_client_cert_verifier(Arc::new(CurrentVerifier(self.clone())))
            .with_cert_resolver(Arc::new(CurrentCertificate(self.clone())));
        // The listener picks the cipher suite (AES-128-GCM first, see `provider`).
        config.ignore_client_order = true;
        if self.settings.session_resumption {
            // TLS 1.3 resumes with stateless tickets; the cache serves TLS 1.2 session ids.
            config.ticketer = Arc::new(ResumptionGuard(self.clone()));
            config.session_storage = Arc::new(ResumptionGuard(self.clone()));
        } else {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(config)
    }

    /// Reloads if any TLS file changed since the last look (or always, with `force`).
    pub fn reload(&self, force: bool) -> ReloadOutcome {
        let digest = files_digest(&self.settings);
        {
            let mut last = self.files_digest.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *last == digest {
                return ReloadOutcome::Unchanged;
            }
            // Remember what we saw, good or bad: a broken file is reported once, not every poll.
            *last = digest;
        }
        match TlsMaterial::load(&self.settings, &self.provider) {
            Ok(material) => {
                let trust_changed = material.trust_digest != self.material.load().trust_digest;
                if trust_changed {
                    // Sessions established under the old trust must not resume under the new:
                    // the cache is emptied and tickets get a new key, so old ones do not open.
                    self.sessions
                        .store(ServerSessionMemoryCache::new(SESSION_CACHE_SIZE));
                    match new_ticketer() {
                        Ok(tickets) => self.tickets.store(Arc::new(tickets)),
                        Err(error) => {
                            // Without a fresh key no ticket may be honoured at all.
                            tracing::error!(error = %error, "no new session ticket key; resumption by ticket is off");
                            self.tickets.store(Arc::new(Arc::new(NoTickets)));
                        }
                    }
                }
                tracing::info!(
                    server_certificate = material.server_subject,
                    not_after = %material.server_not_after,
                    trust_changed,
                    "TLS material reloaded; new handshakes use it"
                );
                self.material.store(Arc::new(material));
                self.metrics.tls_reload("ok");
                self.publish_expiry();
                ReloadOutcome::Reloaded { trust_changed }
            }
            Err(error) => {
                self.metrics.tls_reload("rejected");
                tracing::error!(error = %error, "TLS files changed but cannot be used; the previous certificates stay in service");
                ReloadOutcome::Rejected(error.to_string())
            }
        }
    }

    /// Sets the expiry gauges of the server certificate and the CAs.
    pub fn publish_expiry(&self) {
        let material = self.material.load();
        let now = OffsetDateTime::now_utc();
        self.metrics.set_certificate_expiry(
            "server",
            &material.server_subject,
            (material.server_not_after - now).whole_seconds(),
        );
        for ca in &material.cas {
            self.metrics.set_certificate_expiry(
                "client_ca",
                &ca.subject,
                (ca.not_after - now).whole_seconds(),
            );
        }
    }
}

/// SHA-256 over the path and contents of every TLS file (missing files count as empty), so a
/// Kubernetes symlink swap, an in-place rewrite or a new file all count as a change.
fn files_digest(settings: &TlsSettings) -> Vec<u8> {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for path in settings.files() {
        digest.update(path.as_os_str().as_encoded_bytes());
        digest.update(&std::fs::read(path).unwrap_or_default());
    }
    digest.finish().as_ref().to_vec()
}

/// Serves the current certificate whatever name the client asked for.
struct CurrentCertificate(Arc<ReloadableTls>);

impl fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentCertificate")
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material.load().key.clone())
    }
}

/// The session cache and ticket key of the current trust. Both are replaced when the trust
/// changes, so no session made under the old CA bundle or CRLs can be resumed: the client must
/// do a full handshake, which checks its certificate against the new trust.
struct ResumptionGuard(Arc<ReloadableTls>);

impl fmt::Debug for ResumptionGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumptionGuard")
    }
}

impl StoresServerSessions for ResumptionGuard {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.sessions.load().put(key, value)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.sessions.load().get(key)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.sessions.load().take(key)
    }
    fn can_cache(&self) -> bool {
        true
    }
}

impl ProducesTickets for ResumptionGuard {
    fn enabled(&self) -> bool {
        self.0.tickets.load().enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.tickets.load().lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.tickets.load().encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.0.tickets.load().decrypt(cipher)
    }
}

/// Refuses every ticket: the fallback if a new ticket key cannot be made.
#[derive(Debug)]
struct NoTickets;

impl ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }
    fn lifetime(&self) -> u32 {
        0
    }
    fn encrypt(&self, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn decrypt(&self, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// Verifies client certificates with the current material, and logs and counts every refusal
/// with its reason: rustls itself says nothing useful about why a handshake failed.
struct CurrentVerifier(Arc<ReloadableTls>);

impl fmt::Debug for CurrentVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentVerifier")
    }
}

/// A stable name for why a client certificate failed verification.
pub fn handshake_failure_kind(error: &TlsError) -> &'static str {
    match error {
        TlsError::InvalidCertificate(cert_error) => match cert_error {
            CertificateError::UnknownIssuer => "untrusted_issuer",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "wrong_key_usage"
            }
            CertificateError::Revoked => "revoked",
            CertificateError::UnknownRevocationStatus => "unknown_revocation_status",
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => "expired_crl",
            CertificateError::BadSignature => "bad_signature",
            CertificateError::BadEncoding => "bad_encoding",
            _ => "invalid_certificate",
        },
        _ => "other",
    }
}

impl ClientCertVerifier for CurrentVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.settings.client_auth == ClientAuth::Required
    }

    /// No CA names are hinted: the bundle can change at run time and this must return a
    /// borrowed slice. An empty list tells clients to send whatever certificate they have.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        let material = self.0.material.load();
        material
            .verifier
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|error| {
                let kind = handshake_failure_kind(error);
                self.0.metrics.handshake_failure(kind);
                let presented = PeerCertificate::from_der(end_entity).ok();
                tracing::warn!(
                    kind,
                    error = %error,
                    subject = presented.as_ref().map(|c| c.subject.to_string()),
                    issuer = presented.as_ref().map(|c| c.issuer.to_string()),
                    fingerprint = presented.as_ref().map(|c| c.fingerprint.to_string()),
                    "client certificate refused in the TLS handshake"
                );
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, TlsError> {
        self.0
            .material
            .load()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, TlsError> {
        self.0
            .material
            .load()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.material.load().verifier.supported_verify_schemes()
    }
}

/// Watches the TLS files (every `reload_interval_secs`) and SIGHUP, and warns once a day about
/// certificates inside the expiry window. Runs until the process ends.
pub async fn watch(tls: Arc<ReloadableTls>) {
    let interval = std::time::Duration::from_secs(tls.settings.reload_interval_secs.max(1));
    let polling = tls.settings.reload_interval_secs > 0;
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut warned: std::collections::HashMap<String, std::time::Instant> = Default::default();
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        tokio::select! {
            _ = signalled => {
                tracing::info!("SIGHUP: reloading TLS files");
                tls.reload(true);
            }
            _ = tokio::time::sleep(interval) => {
                if polling {
                    tls.reload(false);
                }
            }
        }
        tls.publish_expiry();
        warn_expiring(&tls, &mut warned);
    }
}

fn warn_expiring(
    tls: &ReloadableTls,
    warned: &mut std::collections::HashMap<String, std::time::Instant>,
) {
    const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    let window = time::Duration::days(tls.settings.expiry_warning_days as i64);
    let now = OffsetDateTime::now_utc();
    let material = tls.material.load();
    let mut items = vec![(
        format!("server certificate {}", material.server_subject),
        material.server_not_after,
    )];
    items.extend(
        material
            .cas
            .iter()
            .map(|ca| (format!("client CA {}", ca.subject), ca.not_after)),
    );
    items.extend(
        tls.metrics
            .client_certificates()
            .into_iter()
            .map(|(client, not_after)| {
                (
                    format!("last certificate of client {client}"),
                    OffsetDateTime::from_unix_timestamp(not_after).unwrap_or(now),
                )
            }),
    );
    for (what, not_after) in items {
        if not_after - now > window {
            continue;
        }
        let due = warned.get(&what).is_none_or(|at| at.elapsed() >= DAY);
        if due {
            tracing::warn!(certificate = what, not_after = %not_after, days_left = (not_after - now).whole_days(), "certificate expires soon");
            warned.insert(what, std::time::Instant::now());
        }
    }
}

/// `HttpServer::on_connect`: stores what the TLS layer proved about the peer in connection data.
/// The leaf is the FIRST certificate of the peer chain.
pub fn record_peer_identity(connection: &dyn Any, data: &mut Extensions, metrics: &Metrics) {
    let Some(tls) = connection.downcast_ref::<TlsStream<TcpStream>>() else {
        return;
    };
    metrics.handshake(match tls.get_ref().1.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => "resumed",
        _ => "full",
    });
    let identity = match tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
    {
        None => ConnectionIdentity::Anonymous,
        Some(leaf) => match PeerCertificate::from_der(leaf) {
            Ok(cert) => ConnectionIdentity::Certificate(Arc::new(cert)),
            Err(reason) => ConnectionIdentity::Unreadable(reason),
        },
    };
    data.insert(identity);
}
