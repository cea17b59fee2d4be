//! Session resumption that cannot skip a change of trust.
//!
//! TLS 1.3 resumes with stateless tickets, TLS 1.2 with the session cache. Both are held by
//! [`super::ReloadableTls`] and replaced when the CA bundle or the CRLs change, so no session
//! made under the old trust can be resumed: the client must do a full handshake, which checks
//! its certificate against the new trust.

use std::fmt;
use std::sync::Arc;

use rustls::Error as RustlsError;
use rustls::server::{ProducesTickets, StoresServerSessions};

use super::ReloadableTls;

/// Entries of the TLS 1.2 session cache.
pub(super) const SESSION_CACHE_SIZE: usize = 4096;

/// Stateless session tickets (12 hours, keys rotated every 6), from the provider in use.
pub(super) fn new_ticketer() -> Result<Arc<dyn ProducesTickets>, RustlsError> {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::Ticketer::new();
    #[cfg(not(feature = "aws-lc-rs"))]
    rustls::crypto::ring::Ticketer::new()
}

/// The session cache and ticket key of the current trust, consulted on every resumption.
pub(super) struct ResumptionGuard(pub(super) Arc<ReloadableTls>);

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
pub(super) struct NoTickets;

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
