//! `on_connect`: what the TLS layer proved about the peer, stored in connection data once per
//! connection for every request on it to read (actix's connection data over HTTP/1.1; a
//! [`ConnectionData`] in each request's extensions over HTTP/2, whose dispatcher is the
//! listener's own and cannot set actix's).

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use time::OffsetDateTime;

use super::ReloadableTls;
use super::path::chain_key;
use super::verifier::handshake_failure_kind;
use crate::identity::{ConnectionIdentity, PeerCertificate};

/// When a connection was accepted, for `tls.max_connection_age_secs`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionOpened(pub std::time::Instant);

/// What a connection's handshake established, shared by all its requests.
#[derive(Clone)]
pub struct ConnectionData(std::rc::Rc<Extensions>);

impl ConnectionData {
    pub fn new(data: Extensions) -> Self {
        Self(std::rc::Rc::new(data))
    }

    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.0.get()
    }
}

/// What the connection of `request` recorded of type `T`, over either HTTP version.
pub fn connection_value<T: Clone + 'static>(request: &actix_web::dev::ServiceRequest) -> Option<T> {
    use actix_web::HttpMessage as _;
    request.conn_data::<T>().cloned().or_else(|| {
        request
            .extensions()
            .get::<ConnectionData>()
            .and_then(|data| data.get::<T>().cloned())
    })
}

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
