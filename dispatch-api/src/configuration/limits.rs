//! What one request, one connection and the callers that proved nothing may take: body and
//! header sizes, timeouts, HTTP/2 streams, the recorder's queue, and `limits.unproven`.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    pub max_body_bytes: usize,
    /// All request header names and values together.
    pub max_header_bytes: usize,
    pub max_stops: usize,
    /// Usage/audit records held in memory before new ones are dropped (and counted).
    pub record_queue: usize,
    /// And the bytes those records may hold together.
    pub record_queue_bytes: usize,
    /// The longest wait for the next piece of a request body (nginx's `client_body_timeout`);
    /// past it the request gets 408.
    pub body_timeout_secs: u64,
    /// Once an answer is ready, the unread rest of a request body is read and discarded within
    /// `drain_secs` (nginx's lingering close; over HTTP/1.1 also up to `drain_bytes`), so that
    /// early answers (401, 413, ...) reach clients whole; past the bound the connection is
    /// closed (HTTP/1.1) or the stream ended with NO_ERROR after the answer (HTTP/2).
    pub drain_bytes: usize,
    pub drain_secs: u64,
    /// SETTINGS_MAX_CONCURRENT_STREAMS of every HTTP/2 connection (nginx's 128): a stream past
    /// it is refused with REFUSED_STREAM, which a client may send again.
    pub http2_max_concurrent_streams: u32,
    /// The share of requests that proved nothing (see `precedence`).
    pub unproven: UnprovenSettings,
}

/// Bounds on requests that proved nothing (no certificate, no valid key), so that they cannot
/// crowd out certificate and key clients, which they never count. A network is a /24 (IPv4) or
/// a /64 (IPv6) of the peer address. 0 turns a bound off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnprovenSettings {
    /// Their answers per second, all networks together; past it, each waits its turn.
    pub requests_per_sec: u32,
    /// Their answers per second from one network.
    pub network_requests_per_sec: u32,
    /// The longest one waits for its turn; past it, 503 with Retry-After at once.
    pub max_wait_ms: u64,
    /// Connections whose requests proved nothing, all networks together; past it, 503 and the
    /// connection closed.
    pub max_connections: usize,
    /// The same, from one network.
    pub network_max_connections: usize,
}

impl Default for UnprovenSettings {
    fn default() -> Self {
        Self {
            requests_per_sec: 200,
            network_requests_per_sec: 50,
            max_wait_ms: 10_000,
            max_connections: 1024,
            network_max_connections: 128,
        }
    }
}

impl LimitSettings {
    /// SETTINGS_MAX_HEADER_LIST_SIZE: what h2 holds of one request's header list before it
    /// refuses the stream itself (a bare 431, then REFUSED_STREAM, which curl retries and then
    /// reports as an error). Twice `max_header_bytes` and 16 KiB for the path, so that a list
    /// the API refuses gets the API's 431 problem: h2 counts 28 bytes more per field than
    /// `max_header_bytes` does (RFC 9113 §6.5.2), and the pseudo-header fields too.
    pub fn http2_max_header_list_size(&self) -> u32 {
        u32::try_from(
            self.max_header_bytes
                .saturating_mul(2)
                .saturating_add(16 * 1024),
        )
        .unwrap_or(u32::MAX)
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_header_bytes: 16 * 1024,
            max_stops: 500,
            record_queue: 65_536,
            record_queue_bytes: 16 * 1024 * 1024,
            body_timeout_secs: 10,
            drain_bytes: 1024 * 1024,
            drain_secs: 5,
            http2_max_concurrent_streams: 128,
            unproven: UnprovenSettings::default(),
        }
    }
}
