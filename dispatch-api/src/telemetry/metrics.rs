//! The Prometheus metrics the operations listener exports, and what each records.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::DROPPED_LINES;
use super::labels::{
    CertificateLabels, ClientLabels, KeyLabels, KindLabels, OutcomeLabels, ReasonLabels,
    RequestLabels,
};

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    handshake_failures: Family<KindLabels, Counter>,
    handshakes: Family<KindLabels, Counter>,
    pub recorder_dropped: Counter,
    /// The log writer's dropped lines, copied in at each scrape (see [`DROPPED_LINES`]), and
    /// the total copied so far (swapped, so concurrent scrapes add each drop once).
    log_lines_dropped: Counter,
    log_lines_copied: AtomicU64,
    request_bodies: Family<OutcomeLabels, Counter>,
    unproven: Family<OutcomeLabels, Counter>,
    old_key_late_uses: Counter,
    readiness_probes: Counter,
    flips_reverted: Counter,
    retired_unknown_source: Counter,
    tls_reloads: Family<OutcomeLabels, Counter>,
    crls_refused: Gauge<i64, AtomicI64>,
    certificate_expiry: Family<CertificateLabels, Gauge<i64, AtomicI64>>,
    api_key_expiry: Family<KeyLabels, Gauge<i64, AtomicI64>>,
    /// notAfter (unix seconds) of the last certificate seen from each client.
    client_certificates: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Each client's newest certificate this replica saw (the latest notAfter): its notBefore
    /// and notAfter, for its renewal health.
    newest_certificates: std::sync::Mutex<std::collections::HashMap<String, (i64, i64)>>,
    newest_left: Family<ClientLabels, Gauge<i64, AtomicI64>>,
    newest_lifetime: Family<ClientLabels, Gauge<i64, AtomicI64>>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("dispatch"),
            requests: Family::default(),
            refusals: Family::default(),
            handshake_failures: Family::default(),
            handshakes: Family::default(),
            recorder_dropped: Counter::default(),
            log_lines_dropped: Counter::default(),
            log_lines_copied: AtomicU64::new(0),
            request_bodies: Family::default(),
            unproven: Family::default(),
            old_key_late_uses: Counter::default(),
            readiness_probes: Counter::default(),
            flips_reverted: Counter::default(),
            retired_unknown_source: Counter::default(),
            tls_reloads: Family::default(),
            crls_refused: Gauge::default(),
            certificate_expiry: Family::default(),
            api_key_expiry: Family::default(),
            client_certificates: Default::default(),
            newest_certificates: Default::default(),
            newest_left: Family::default(),
            newest_lifetime: Family::default(),
        };
        metrics.describe();
        metrics
    }

    /// Registers each metric under its name, with the help text `/metrics` gives the operator.
    fn describe(&mut self) {
        self.describe_requests();
        self.describe_service();
    }

    /// What requests got, and what the migration's safety nets did with them.
    fn describe_requests(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "requests",
            "API requests by client, auth method and outcome",
            self.requests.clone(),
        );
        registry.register(
            "auth_refusals",
            "Refused requests by reason code",
            self.refusals.clone(),
        );
        registry.register(
            "request_bodies_unread",
            "Request bodies not read to their end by a handler: drained (the rest read and \
             discarded so the answer arrives whole), cut (past limits.drain_bytes or drain_secs: HTTP/1.1 \
             connection closed), timed_out (limits.body_timeout_secs: 408), or not_started \
             (HTTP/2: answered before any of it arrived; the stream ends with the answer and \
             RST_STREAM(NO_ERROR))",
            self.request_bodies.clone(),
        );
        registry.register(
            "unproven_requests",
            "Requests that proved nothing (no certificate, no valid key), by what they got: now \
             (answered at once), waited (their turn within limits.unproven's rates), shed_rate \
             (503: their turn past max_wait_ms), shed_connections (503 and closed: their \
             connection past the connection caps)",
            self.unproven.clone(),
        );
        registry.register(
            "flips_reverted",
            "Guarded mode changes that reached their max_refusals with refusals from networks \
             that used the retired method before the flip: that method re-admitted from those \
             networks only, for a bounded time; the audit log's mode_reverted rows name the \
             client, the evidence and the networks",
            self.flips_reverted.clone(),
        );
        registry.register(
            "retired_credential_unknown_source",
            "Refusals, during a guarded flip's watch, of the credential it retired sent from a \
             network that did not use it before the flip (a leaked or stolen credential): they \
             never count toward the guard (the audit log's retired_credential_unknown_source \
             alerts name the client and the network)",
            self.retired_unknown_source.clone(),
        );
        registry.register(
            "old_key_late_uses",
            "Requests authenticated by the key a rotation replaced, in the last tenth of its \
             overlap: an instance still holds the old key and will fail when the overlap ends \
             (the audit log's old_key_used_late_in_overlap alerts name the client)",
            self.old_key_late_uses.clone(),
        );
    }

    /// The service's own health: handshakes, TLS material, expiries, what it had to drop.
    fn describe_service(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "client_newest_certificate_seconds_left",
            "Seconds until each client's newest certificate (the latest notAfter this replica saw \
             from any of its instances) expires: a successor is due once a third of its lifetime \
             is left; close to 0 with none seen, its renewal has stopped (alert \
             DispatchClientCertificateNotRenewed)",
            self.newest_left.clone(),
        );
        registry.register(
            "client_newest_certificate_lifetime_seconds",
            "The lifetime (notAfter - notBefore) of each client's newest certificate",
            self.newest_lifetime.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Client certificates refused in the TLS handshake, by kind",
            self.handshake_failures.clone(),
        );
        registry.register(
            "tls_handshakes",
            "Completed TLS handshakes by kind: full, or resumed (no certificate work)",
            self.handshakes.clone(),
        );
        registry.register(
            "recorder_dropped",
            "Usage and audit records dropped because the queue was full or the database failed",
            self.recorder_dropped.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log sink (stderr) was slower than the service: \
             requests never wait for it (telemetry.log_buffer_lines)",
            self.log_lines_dropped.clone(),
        );
        registry.register(
            "readiness_probes",
            "Database probes /readyz took (a write transaction on SQLite): at most one a second, \
             however often /readyz is asked",
            self.readiness_probes.clone(),
        );
        registry.register(
            "tls_reloads",
            "Reloads of the TLS files: ok, or rejected (the old material stayed in service)",
            self.tls_reloads.clone(),
        );
        registry.register(
            "crls_refused",
            "CRL files' lists left out of the TLS material in service because no CA of the \
             bundle signed them (a CA re-keyed under its name: add its new certificate)",
            self.crls_refused.clone(),
        );
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until expiry: the server certificate, each client CA, each client's last certificate",
            self.certificate_expiry.clone(),
        );
        registry.register(
            "api_key_expiry_seconds",
            "Seconds until each API key that has an expiry stops being accepted: a key issued \
             with expires_in_secs, or one a rotation replaced (the end of its overlap); by \
             client, key id (a prefix of the key's hash) and state (current, or overlap)",
            self.api_key_expiry.clone(),
        );
    }

    pub fn request(&self, client: &str, method: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels {
                client: client.into(),
                method,
                outcome,
            })
            .inc();
    }

    pub fn refusal(&self, reason: &str) {
        self.refusals
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn handshake_failure(&self, kind: &str) {
        self.handshake_failures
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    pub fn handshake(&self, kind: &str) {
        self.handshakes
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    pub fn request_body_unread(&self, outcome: &str) {
        self.request_bodies
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn flip_reverted(&self) {
        self.flips_reverted.inc();
    }

    pub fn retired_credential_unknown_source(&self, refusals: u64) {
        self.retired_unknown_source.inc_by(refusals);
    }

    pub fn readiness_probe(&self) {
        self.readiness_probes.inc();
    }

    pub fn old_key_late_use(&self) {
        self.old_key_late_uses.inc();
    }

    pub fn unproven_request(&self, outcome: &str) {
        self.unproven
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// How many CRLs the TLS material in service left out (`Trust::refused_crls`).
    pub fn set_crls_refused(&self, count: usize) {
        self.crls_refused
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn tls_reload(&self, outcome: &str) {
        self.tls_reloads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn set_certificate_expiry(&self, kind: &str, name: &str, seconds: i64) {
        self.certificate_expiry
            .get_or_create(&CertificateLabels {
                kind: kind.into(),
                name: name.into(),
            })
            .set(seconds);
    }

    /// Replaces the exported key expiries with `keys`: (client, key id, state, seconds left).
    pub fn set_api_key_expiries(
        &self,
        keys: impl IntoIterator<Item = (String, String, &'static str, i64)>,
    ) {
        self.api_key_expiry.clear();
        for (client, key, state, seconds) in keys {
            let labels = KeyLabels {
                client,
                key,
                state: state.into(),
            };
            self.api_key_expiry.get_or_create(&labels).set(seconds);
        }
    }

    /// Remembers the notAfter of the certificate a client last presented.
    pub fn record_client_certificate(&self, client: &str, not_after: i64) {
        let mut map = self
            .client_certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.insert(client.to_owned(), not_after);
    }

    /// Whether `not_after` is later than the newest certificate seen from `client` (cheap: the
    /// caller reads the certificate's notBefore only then).
    pub fn is_newest_certificate(&self, client: &str, not_after: i64) -> bool {
        let map = self
            .newest_certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(client)
            .is_none_or(|&(_, newest)| not_after > newest)
    }

    /// Remembers `client`'s newest certificate, if it is newer than the one remembered.
    pub fn record_newest_certificate(&self, client: &str, not_before: i64, not_after: i64) {
        let mut map = self
            .newest_certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let newest = map
            .entry(client.to_owned())
            .or_insert((not_before, not_after));
        if not_after > newest.1 {
            *newest = (not_before, not_after);
        }
    }

    pub fn client_certificates(&self) -> Vec<(String, i64)> {
        let map = self
            .client_certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(c, t)| (c.clone(), *t)).collect()
    }

    /// The Prometheus/OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for (client, not_after) in self.client_certificates() {
            self.set_certificate_expiry("client", &client, not_after - now);
        }
        let newest: Vec<(String, (i64, i64))> = self
            .newest_certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(client, times)| (client.clone(), *times))
            .collect();
        for (client, (not_before, not_after)) in newest {
            let labels = ClientLabels { client };
            self.newest_left.get_or_create(&labels).set(not_after - now);
            self.newest_lifetime
                .get_or_create(&labels)
                .set(not_after - not_before);
        }
        if let Some(dropped) = DROPPED_LINES.get() {
            let total = dropped.dropped_lines() as u64;
            let copied = self.log_lines_copied.fetch_max(total, Ordering::Relaxed);
            self.log_lines_dropped.inc_by(total.saturating_sub(copied));
        }
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_clients_newest_certificate_is_kept_and_exported_with_its_lifetime() {
        let metrics = Metrics::new();
        assert!(metrics.is_newest_certificate("w", 1_000));
        metrics.record_newest_certificate("w", 910, 1_000);
        // An older one (an instance not yet renewed) changes nothing; a renewal does.
        assert!(!metrics.is_newest_certificate("w", 990));
        assert!(!metrics.is_newest_certificate("w", 1_000));
        metrics.record_newest_certificate("w", 800, 990);
        assert!(metrics.is_newest_certificate("w", 1_060));
        metrics.record_newest_certificate("w", 970, 1_060);
        let text = metrics.encode();
        assert!(
            text.contains("dispatch_client_newest_certificate_lifetime_seconds{client=\"w\"} 90"),
            "{text}"
        );
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let left = format!(
            "dispatch_client_newest_certificate_seconds_left{{client=\"w\"}} {}",
            1_060 - now
        );
        assert!(text.contains(&left), "{text}");
    }
}
