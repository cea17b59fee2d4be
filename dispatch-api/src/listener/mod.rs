//! The HTTPS listener, assembled from actix's parts instead of `HttpServer`, for one reason:
//! `HttpServer` gives no access to a connection between TLS and HTTP, so it cannot send an
//! HTTP/2 connection a GOAWAY when that connection reaches `tls.max_connection_age_secs` or the
//! server stops. Here the pipeline is the same as `HttpServer::listen_rustls_0_23`'s (TLS
//! acceptor, ALPN picks HTTP/2 or HTTP/1.1, actix-http's service, the App) with
//! [`draining::Draining`] between TLS and HTTP.

mod draining;
mod frames;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, Protocol, Request, Response, body::MessageBody};
use actix_server::Server;
use actix_service::{
    IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt as _, apply_fn_factory,
    map_config,
};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use rustls::ServerConfig;

use crate::configuration::Settings;
use crate::tls::{self, ReloadableTls};
use draining::{Deadline, Draining};

/// Serves `app` over TLS on `listener`, HTTP/2 and HTTP/1.1, with the server settings (workers,
/// connection limit, timeouts, shutdown grace) of `settings`.
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    mut tls_config: ServerConfig,
    settings: &Settings,
    reloadable_tls: Arc<ReloadableTls>,
    app: F,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let address = listener.local_addr()?;
    tls_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let server = &settings.server;
    let keep_alive = Duration::from_secs(server.keep_alive_secs);
    let request_timeout = Duration::from_millis(server.client_request_timeout_ms);
    let handshake_timeout = Duration::from_millis(server.tls_handshake_timeout_ms);
    let max_age = settings.tls.max_connection_age_secs;
    let mut builder = Server::build()
        .max_concurrent_connections(server.max_connections)
        .shutdown_timeout(server.shutdown_grace_secs)
        .disable_signals();
    if let Some(workers) = server.workers {
        builder = builder.workers(workers);
    }
    // Fires when the server starts a graceful stop (`ServerHandle::stop(true)`).
    let stopping = builder.graceful_shutdown_signal();
    builder
        .listen("dispatch-api-https", listener, move || {
            let identity_tls = reloadable_tls.clone();
            let h1_stopping = stopping.clone();
            let h2_stopping = stopping.clone();
            let http = HttpService::build()
                .keep_alive(keep_alive)
                .client_request_timeout(request_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                // HTTP/1.1 keep-alive connections close after their current response once the
                // server stops, as under `HttpServer` (hidden but public: it is how actix-web
                // wires it; the version is pinned by Cargo.lock).
                .graceful_shutdown_signal(move || {
                    let stopping = h1_stopping.clone();
                    async move { stopping.notified().await }
                })
                .on_connect_ext(move |io: &Draining<TlsStream<TcpStream>>, data| {
                    tls::record_peer_identity(io.get_ref(), data, &identity_tls);
                })
                .finish(map_config(
                    app()
                        .into_factory()
                        .map_err(|error| error.into().error_response()),
                    move |_| AppConfig::__priv_test_new(true, address.to_string(), address),
                ));
            let mut acceptor = Acceptor::new(tls_config.clone());
            acceptor.set_handshake_timeout(handshake_timeout);
            // Nagle's algorithm off, as nginx and HAProxy have it: with it on, a response
            // written while the session tickets sent just before are still unacknowledged waits
            // for the client's delayed ACK (40 ms on Linux) on every new connection.
            // (`HttpService::tcp_nodelay` cannot: it sets it only on a bare `TcpStream`.)
            apply_fn_factory::<_, _, _, _, TcpStream, TcpStream, _, _>(acceptor, |io, acceptor| {
                let _ = io.set_nodelay(true);
                acceptor.call(io)
            })
            .map_init_err(|_| unreachable!("the TLS acceptor does not fail to start"))
            .map_err(|_| ())
            .map(move |io: TlsStream<TcpStream>| {
                let peer = io.get_ref().0.peer_addr().ok();
                if io.get_ref().1.alpn_protocol() == Some(b"h2") {
                    let deadline = deadline(max_age, h2_stopping.clone());
                    (Draining::http2(io, deadline), Protocol::Http2, peer)
                } else {
                    (Draining::http1(io), Protocol::Http1, peer)
                }
            })
            .and_then(http.map_err(|_| ()))
        })
        .map(actix_server::ServerBuilder::run)
}

/// How long an aged HTTP/2 connection must have been quiet before its GOAWAY: longer than
/// httpx keeps an idle connection (5 s), see `draining`.
const QUIET_BEFORE_GOAWAY: Duration = Duration::from_secs(10);

/// When an HTTP/2 connection should go, and how long it must then have been quiet: at
/// `max_age_secs` (0: never), quiet for [`QUIET_BEFORE_GOAWAY`]; when the server stops, at once.
fn deadline(max_age_secs: u64, stopping: actix_server::GracefulShutdownSignal) -> Deadline {
    Box::pin(async move {
        let aged = async {
            if max_age_secs == 0 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_secs(max_age_secs)).await;
        };
        tokio::select! {
            () = aged => QUIET_BEFORE_GOAWAY,
            () = stopping.notified() => Duration::ZERO,
        }
    })
}
