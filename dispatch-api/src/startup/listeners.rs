//! The two listeners the application serves: HTTPS (the API behind the middleware every request
//! passes) and the operations listener (health, readiness, metrics, the OpenAPI document).

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use super::StartupError;
use crate::error::ApiError;
use crate::listener::{self, ListenerSettings};
use crate::routes::middleware::{
    bound_request_body, close_aged_connections, give_precedence, observe_request,
    reject_oversized_headers,
};
use crate::state::AppState;
use crate::{routes, tls};

/// A listening socket, the port it got (port 0 in settings: one the OS picks), and the
/// address as settings name it, for errors.
pub(super) struct Socket {
    listener: TcpListener,
    pub port: u16,
    address: String,
}

pub(super) fn bind(address: String) -> Result<Socket, StartupError> {
    let bound = TcpListener::bind(&address).and_then(|listener| {
        let port = listener.local_addr()?.port();
        Ok((listener, port))
    });
    match bound {
        Ok((listener, port)) => Ok(Socket {
            listener,
            port,
            address,
        }),
        Err(source) => Err(StartupError::Bind { address, source }),
    }
}

/// The HTTPS listener: the API's routes behind the middleware that every request passes.
pub(super) fn serve_https(
    socket: Socket,
    tls_config: rustls::ServerConfig,
    tls: &Arc<tls::ReloadableTls>,
    state: &web::Data<AppState>,
    settings: ListenerSettings<'_>,
) -> Result<Server, StartupError> {
    let Socket {
        listener, address, ..
    } = socket;
    let max_body = state.limits.max_body_bytes;
    let body_timeout_secs = state.limits.body_timeout_secs;
    let state = state.clone();
    listener::serve(listener, tls_config, settings, tls.clone(), move || {
        App::new()
            .app_data(state.clone())
            .app_data(routes::json_config(max_body, body_timeout_secs))
            .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()),
            )
            .wrap(from_fn(close_aged_connections))
            // Inside the audit, so that it records the answer the client gets.
            .wrap(from_fn(give_precedence))
            .wrap(from_fn(observe_request))
            // An oversized request head is refused before anything else runs.
            .wrap(from_fn(reject_oversized_headers))
            // Outermost: every answer, refusals included, waits for the unread body
            // (bounded) so that it reaches the client whole.
            .wrap(from_fn(bound_request_body))
            .configure(routes::api_routes)
            .default_service(web::to(routes::not_found))
    })
    .map_err(|source| StartupError::Bind { address, source })
}

/// Connections the operations listener serves at once, at most: probes and scrapers need a
/// few; it is unauthenticated, and every connection past these waits in the accept queue
/// instead of costing the service memory and a task.
const OPS_MAX_CONNECTIONS: usize = 64;

/// The operations listener (plain HTTP): health, readiness, metrics, the OpenAPI document.
pub(super) fn serve_ops(
    socket: Socket,
    state: &web::Data<AppState>,
    grace: u64,
) -> Result<Server, StartupError> {
    let Socket {
        listener, address, ..
    } = socket;
    let state = state.clone();
    let pace = web::Data::new(routes::ops::Pace::default());
    let server = HttpServer::new(move || {
        // On the listener's one worker thread, as it starts.
        routes::ops::lower_thread_priority();
        let app = App::new()
            .app_data(state.clone())
            .app_data(pace.clone())
            .wrap(from_fn(routes::ops::paced))
            // Not documented in itself: it is the document.
            .route("/openapi.json", web::get().to(routes::openapi::serve));
        routes::ops::endpoints()
            .iter()
            .flat_map(|endpoint| {
                endpoint
                    .routes()
                    .map(|route| (endpoint.path.clone(), route))
            })
            .fold(app, |app, (path, route)| app.route(&path, route))
            .default_service(web::to(routes::not_found))
    })
    .workers(1)
    .max_connections(OPS_MAX_CONNECTIONS)
    .disable_signals()
    .shutdown_timeout(grace)
    .listen(listener)
    .map_err(|source| StartupError::Bind { address, source })?;
    Ok(server.run())
}
