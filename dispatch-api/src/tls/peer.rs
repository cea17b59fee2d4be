//! `on_connect`: what the TLS layer proved about the peer, stored in connection data once per
//! connection for every request on it to read.

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use time::OffsetDateTime;

use super::ReloadableTls;
use super::trust::chain_key;
use super::verifier::handshake_failure_kind;
use crate::identity::{ConnectionIdentity, PeerCertificate};

/// When a connection was accepted, for `tls.max_connection_age_secs`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionOpened(pub std::time::Instant);

/// Once per connection, before its first request: stores the peer's [`ConnectionIdentity`] and when it connected.
///
/// After a full handshake the verifier has just verified the chain and left the path behind
/// (`Trust::remember`). A resumed session never reaches the verifier: rustls restores the
/// chain from the ticket, so the chain is verified again here with the CURRENT trust, at a
/// time inside the leaf's validity; whether it is still valid, and not revoked, is decided on
/// every request (`auth::authenticate`), so a resumption never outlives the certificate.
pub fn record_peer_identity(
    stream: &TlsStream<TcpStream>,
    data: &mut Extensions,
    tls: &ReloadableTls,
) {
    data.insert(ConnectionOpened(std::time::Instant::now()));
    let session = stream.get_ref().1;
    let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    tls.metrics
        .handshake(if resumed { "resumed" } else { "full" });
    let Some((leaf, intermediates)) = session
        .peer_certificates()
        .and_then(|chain| chain.split_first())
    else {
        data.insert(ConnectionIdentity::Anonymous);
        return;
    };
    let trust = tls.material().trust.clone();
    let identity = match trust.recall(&chain_key(leaf, intermediates)) {
        Some(verified) => ConnectionIdentity::Certificate(verified),
        None => match PeerCertificate::from_der(leaf) {
            Err(reason) => ConnectionIdentity::Unreadable(reason),
            Ok(parsed) => {
                match trust.verify_within_validity(
                    &parsed,
                    leaf,
                    intermediates,
                    OffsetDateTime::now_utc(),
                ) {
                    Ok(verified) => ConnectionIdentity::Certificate(verified),
                    Err(error) => {
                        let kind = handshake_failure_kind(&super::verifier::rustls_error(error));
                        ConnectionIdentity::Unverified {
                            kind,
                            detail: format!("the session's certificate no longer verifies: {kind}"),
                        }
                    }
                }
            }
        },
    };
    data.insert(identity);
}
