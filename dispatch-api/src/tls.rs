//! rustls for the one HTTPS listener.
//!
//! The server certificate, the client CA bundle and the CRLs are [`TlsMaterial`], loaded from
//! files in one go (`material`) and held by [`ReloadableTls`], which the listener's
//! `ServerConfig` consults on every handshake: the certificate resolver here, the client
//! verifier in `verifier` (who can complete a handshake), the session cache and tickets in
//! `resumption`. A reload (file change or SIGHUP, `watch`) swaps the material atomically: new
//! handshakes use it, open connections stay. A broken, half-written or expired replacement
//! keeps the old material and is logged and counted. After a change of trust (CA bundle or
//! CRLs), sessions made under the old trust cannot be resumed.

mod bundle;
mod crl;
mod error;
mod material;
mod path;
mod peer;
mod resumption;
#[cfg(test)]
pub(crate) mod testing;
mod trust;
mod verifier;
mod watch;

use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

pub use bundle::BundleCa;
pub use error::MaterialError;
pub use material::TlsMaterial;
pub use path::{PathFailure, chain_key};
pub use peer::{ConnectionData, ConnectionOpened, connection_value, record_peer_identity};
pub use trust::Trust;
pub use watch::watch;

use crate::configuration::TlsSettings;
use crate::telemetry::Metrics;
use material::files_digest;
use resumption::{NoTickets, ResumptionGuard, SESSION_CACHE_SIZE, new_ticketer};
use verifier::CurrentVerifier;

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

/// The listener's TLS state, swappable while serving.
pub struct ReloadableTls {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    material: ArcSwap<TlsMaterial>,
    sessions: ArcSwap<ServerSessionMemoryCache>,
    tickets: ArcSwap<Arc<dyn ProducesTickets>>,
    metrics: Arc<Metrics>,
    /// Digest of the bytes of every TLS file as last seen, to notice changes.
    files_digest: Mutex<Vec<u8>>,
}

impl ReloadableTls {
    pub fn load(settings: &TlsSettings, metrics: Arc<Metrics>) -> Result<Arc<Self>, MaterialError> {
        let provider = provider();
        let material = TlsMaterial::load(settings, &provider)?;
        report_refused_crls(&material, &metrics);
        let tls = Arc::new(Self {
            settings: settings.clone(),
            provider,
            material: ArcSwap::from_pointee(material),
            sessions: ArcSwap::new(ServerSessionMemoryCache::new(SESSION_CACHE_SIZE)),
            tickets: ArcSwap::from_pointee(new_ticketer().map_err(MaterialError::Rustls)?),
            metrics,
            files_digest: Mutex::new(files_digest(settings)),
        });
        tls.publish_expiry();
        Ok(tls)
    }

    pub fn material(&self) -> arc_swap::Guard<Arc<TlsMaterial>> {
        self.material.load()
    }

    /// The rustls configuration of the listener: TLS 1.3 and 1.2, HTTP/2 and HTTP/1.1 (ALPN is
    /// set by actix); certificate, verifier and session cache all read the current material.
    pub fn server_config(self: &Arc<Self>) -> Result<ServerConfig, MaterialError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(MaterialError::Rustls)?
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

    /// Reloads if any TLS file changed since the last look (or always, with `force`). Broken
    /// new files are logged and counted, and the old material stays in service. Returns
    /// whether the trust (CA bundle or CRLs) changed.
    pub fn reload(&self, force: bool) -> bool {
        let digest = files_digest(&self.settings);
        {
            let mut last = self.files_digest.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *last == digest {
                return false;
            }
            // Remember what we saw, good or bad: a broken file is reported once, not every poll.
            *last = digest;
        }
        match TlsMaterial::load(&self.settings, &self.provider) {
            Ok(material) => {
                let trust_changed = material.trust_digest != self.material.load().trust_digest;
                if trust_changed {
                    self.renew_resumption();
                }
                tracing::info!(
                    server_certificate = material.server_subject,
                    not_after = %material.server_not_after,
                    trust_changed,
                    "TLS material reloaded; new handshakes use it"
                );
                report_refused_crls(&material, &self.metrics);
                self.material.store(Arc::new(material));
                self.metrics.tls_reload("ok");
                self.publish_expiry();
                trust_changed
            }
            Err(error) => {
                self.metrics.tls_reload("rejected");
                tracing::error!(error = %error, "TLS files changed but cannot be used; the previous certificates stay in service");
                false
            }
        }
    }

    /// Sessions established under the old trust must not resume under the new: the cache is
    /// emptied and tickets get a new key, so old ones do not open.
    fn renew_resumption(&self) {
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

    /// Sets the expiry gauges of the server certificate and the CAs.
    pub fn publish_expiry(&self) {
        let material = self.material.load();
        let now = OffsetDateTime::now_utc();
        self.metrics.set_certificate_expiry(
            "server",
            &material.server_subject,
            (material.server_not_after - now).whole_seconds(),
        );
        for ca in material.trust.cas() {
            self.metrics.set_certificate_expiry(
                "client_ca",
                ca.subject.as_str(),
                (ca.not_after - now).whole_seconds(),
            );
        }
    }
}

/// The CRLs left out of a load that otherwise succeeded: an error each, naming the file and
/// the CA certificate to add, and the gauge `dispatch_crls_refused` (alert
/// `DispatchCrlRefused`) while the material in service leaves them out.
fn report_refused_crls(material: &TlsMaterial, metrics: &Metrics) {
    let refused = material.trust.refused_crls();
    metrics.set_crls_refused(refused.len());
    for error in refused {
        tracing::error!(error = %error, "CRL refused; the other CRLs apply");
    }
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
