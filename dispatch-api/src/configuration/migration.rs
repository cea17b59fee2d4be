//! The migration's settings (evidence, quiet period, key overlap, the default flip guard) and
//! the audit log's retention.

use serde::Deserialize;

pub use dispatch_types::FlipGuard;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrationSettings {
    /// A move to `mtls` needs a certificate-authenticated request within this window.
    pub evidence_window_secs: u64,
    /// ...and no request authenticated by the client's API key for this long: one instance
    /// with its certificate does not make a fleet that still sends keys ready. 0: not required.
    pub quiet_period_secs: u64,
    /// How long the key a rotation replaces stays valid when the rotation names no
    /// `overlap_secs` (Stripe's roll with an expiry): every instance holding the old key keeps
    /// working while the new one is deployed. 0: the old key goes at once.
    pub key_overlap_secs: u64,
    /// The guard of every mode change that names none (and `force` does not skip it); unset:
    /// a flip is guarded only when it asks to be.
    pub default_guard: Option<FlipGuard>,
    /// A client whose newest certificate is this close to its end with no successor seen is
    /// not being renewed (`dispatchctl check` fails, the migration report says so). 0: a tenth
    /// of that certificate's lifetime.
    pub renewal_warning_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Audit rows and refusal counts older than this are deleted (hourly, and at start);
    /// 0 keeps them for ever.
    pub retention_days: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

impl Default for MigrationSettings {
    fn default() -> Self {
        Self {
            evidence_window_secs: 24 * 3600,
            quiet_period_secs: 3600,
            key_overlap_secs: 24 * 3600,
            default_guard: None,
            renewal_warning_secs: 0,
        }
    }
}
