//! The HTTPS listener, assembled from actix's parts instead of `HttpServer`, for one reason:
//! `HttpServer` gives no access to a connection between TLS and HTTP, so it cannot send an
//! HTTP/2 connection a GOAWAY when that connection reaches `tls.max_connection_age_secs` or the
//! server stops. Here the pipeline is the same as `HttpServer::listen_rustls_0_23`'s (TLS
//! acceptor, ALPN picks HTTP/2 or HTTP/1.1, the App) with [`draining::Draining`] between TLS
//! and HTTP. HTTP/1.1 connections go to actix-http's service; HTTP/2 ones to [`http2`], which
//! serves the same App with the HTTP/2 limits actix-http cannot set.

mod draining;
mod frames;
mod http2;

use std::future::Future;
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::body::{BoxBody, MessageBody};
use actix_http::{Extensions, HttpService, Protocol, Request, Response};
use actix_server::Server;
use actix_service::{
    IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt as _, apply_fn_factory,
    map_config,
};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use rustls::ServerConfig;

use crate::configuration::{ServerSettings, Settings};
use crate::precedence::ConnectionMark;
use crate::tls::{self, ReloadableTls};
use draining::{Deadline, Draining};
use http2::Http2Limits;

/// A connection once TLS is done and ALPN has chosen.
type Connection = (Draining<TlsStream<TcpStream>>, Protocol, Option<SocketAddr>);

/// What the listener holds its connections to: the `server` section (workers, connection limit,
/// timeouts, shutdown grace), `tls.max_connection_age_secs` and the HTTP/2 limits of `limits`.
pub struct ListenerSettings<'a> {
    pub server: &'a ServerSettings,
    pub max_connection_age_secs: u64,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_header_list_size: u32,
}

impl<'a> ListenerSettings<'a> {
    pub fn of(settings: &'a Settings) -> Self {
        Self {
            server: &settings.server,
            max_connection_age_secs: settings.tls.max_connection_age_secs,
            http2_max_concurrent_streams: settings.limits.http2_max_concurrent_streams,
            http2_max_header_list_size: settings.limits.http2_max_header_list_size(),
        }
    }

    /// What `http2` holds each HTTP/2 connection to.
    fn http2_limits(&self) -> Http2Limits {
        let request_timeout = Duration::from_millis(self.server.client_request_timeout_ms);
        Http2Limits {
            max_concurrent_streams: self.http2_max_concurrent_streams,
            max_header_list_size: self.http2_max_header_list_size,
            // 0 turns actix's request timeout off; the same here.
            handshake_timeout: if request_timeout.is_zero() {
                Duration::MAX
            } else {
                request_timeout
            },
            keep_alive: (self.server.keep_alive_secs > 0)
                .then(|| Duration::from_secs(self.server.keep_alive_secs)),
        }
    }
}

/// Serves `app` over TLS on `listener`, HTTP/2 and HTTP/1.1, as `settings` say.
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    mut tls_config: ServerConfig,
    settings: ListenerSettings<'_>,
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
    let server = settings.server;
    let keep_alive = Duration::from_secs(server.keep_alive_secs);
    let request_timeout = Duration::from_millis(server.client_request_timeout_ms);
    let handshake_timeout = Duration::from_millis(server.tls_handshake_timeout_ms);
    let max_age = settings.max_connection_age_secs;
    let http2_limits = settings.http2_limits();
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
            let http2_tls = reloadable_tls.clone();
            // Two instances of the App per worker: one behind actix-http's HTTP/1.1 service,
            // one behind `http2`.
            let app = || {
                map_config(
                    app()
                        .into_factory()
                        .map_err(|error| error.into().error_response()),
                    move |()| AppConfig::__priv_test_new(true, address.to_string(), address),
                )
            };
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
                    record_connection(io, data, &identity_tls);
                })
                .finish(app());
            let connections = ByProtocol {
                http1: http.map_err(|_| ()),
                app: app(),
                http2_limits,
                tls: http2_tls,
                body: PhantomData,
            };
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
            .and_then(connections)
        })
        .map(actix_server::ServerBuilder::run)
}

/// What each connection's requests share: who the peer proved to be (and when it connected),
/// and its standing among connections whose requests proved nothing.
fn record_connection(
    io: &Draining<TlsStream<TcpStream>>,
    data: &mut Extensions,
    tls: &ReloadableTls,
) {
    tls::record_peer_identity(io.get_ref(), data, tls);
    data.insert(ConnectionMark::default());
}

/// Per worker: each connection to the HTTP/1.1 service or to [`http2`], by what ALPN chose.
/// `B` is the App's response body.
struct ByProtocol<H1, A, B> {
    http1: H1,
    app: A,
    http2_limits: Http2Limits,
    tls: Arc<ReloadableTls>,
    body: PhantomData<fn() -> B>,
}

struct ByProtocolService<H1, A, B> {
    http1: H1,
    app: Rc<A>,
    http2_limits: Http2Limits,
    tls: Arc<ReloadableTls>,
    body: PhantomData<fn() -> B>,
}

type Served = Pin<Box<dyn Future<Output = Result<(), ()>>>>;

impl<H1, A, B> ServiceFactory<Connection> for ByProtocol<H1, A, B>
where
    H1: ServiceFactory<Connection, Config = (), Response = (), Error = ()>,
    H1::Service: 'static,
    H1::Future: 'static,
    A: ServiceFactory<Request, Config = ()>,
    A::Error: Into<Response<BoxBody>>,
    A::Service: 'static,
    A::Future: 'static,
    A::Response: Into<Response<B>>,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = ();
    type Config = ();
    type Service = ByProtocolService<H1::Service, A::Service, B>;
    type InitError = ();
    type Future = Pin<Box<dyn Future<Output = Result<Self::Service, ()>>>>;

    fn new_service(&self, (): ()) -> Self::Future {
        let http1 = self.http1.new_service(());
        let app = self.app.new_service(());
        let http2_limits = self.http2_limits;
        let tls = self.tls.clone();
        Box::pin(async move {
            let (http1, app) = futures_util::future::join(http1, app).await;
            Ok(ByProtocolService {
                http1: http1.map_err(|_| ())?,
                app: Rc::new(app.map_err(|_| ())?),
                http2_limits,
                tls,
                body: PhantomData,
            })
        })
    }
}

impl<H1, A, B> Service<Connection> for ByProtocolService<H1, A, B>
where
    H1: Service<Connection, Response = (), Error = ()>,
    H1::Future: 'static,
    A: Service<Request> + 'static,
    A::Error: Into<Response<BoxBody>>,
    A::Response: Into<Response<B>>,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = ();
    type Future = Served;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        self.http1.poll_ready(cx)
    }

    fn call(&self, (io, protocol, peer): Connection) -> Served {
        if !matches!(protocol, Protocol::Http2) {
            return Box::pin(self.http1.call((io, protocol, peer)));
        }
        let mut data = Extensions::new();
        record_connection(&io, &mut data, &self.tls);
        let connection = http2::serve_connection::<_, _, B>(
            io,
            peer,
            tls::ConnectionData::new(data),
            self.app.clone(),
            self.http2_limits,
        );
        Box::pin(async move {
            connection.await;
            Ok(())
        })
    }
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
