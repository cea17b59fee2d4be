//! HTTP/2 connections, served with h2 directly instead of actix-http's HTTP/2 dispatcher, for
//! one reason: actix-http (3.20) builds its h2 server with h2's defaults and no way to change
//! them, so it advertises no SETTINGS_MAX_CONCURRENT_STREAMS and takes header lists up to
//! 16 MiB: four anonymous connections holding 2000 streams each grew the server by 130 MiB.
//! Here the limits are advertised in the server's SETTINGS and enforced by h2 (a stream past
//! the limit is refused with RST_STREAM(REFUSED_STREAM), which a client may retry; a header
//! list past its bound gets h2's bare 431 before it is held).
//!
//! The rest is what actix-http's dispatcher does: each stream becomes an actix [`Request`]
//! served by the same App on the connection's worker thread, its response written with the
//! same headers (`content-length`, `date`, no connection-specific fields), and an idle
//! connection is pinged every `server.keep_alive_secs` and closed when a PING goes unanswered
//! for as long. What the connection knew at its handshake (who the client is, when it opened)
//! reaches each request as [`ConnectionData`], as `on_connect_ext` data does over HTTP/1.1.
//!
//! A stream answered before the client finished its body ends with the answer and, once the
//! answer is written, RST_STREAM(NO_ERROR) (RFC 9113 §8.1): h2 sends it when the last handle
//! of a stream whose sending side is closed goes while the client is still sending.
//!
//! Until a request on it authenticates (`precedence::ConnectionMark`), a connection has proved
//! nothing: its flow-control window is 64 KiB (2 MiB after) and it is served two streams at a
//! time, so what a client that proved nothing can make the server hold of bodies and requests
//! waiting their turn (`limits.unproven`) is bounded per connection.

use std::cmp;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING, UPGRADE};
use actix_http::{BoxedPayloadStream, HttpMessage as _, Payload, Request, Response, ResponseHead};
use actix_service::Service;
use actix_web::web::Bytes;
use futures_util::Stream;
use h2::server::{Builder, SendResponse};
use h2::{Ping, RecvStream};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::precedence::ConnectionMark;
use crate::tls::ConnectionData;

/// What each HTTP/2 connection is built with.
#[derive(Debug, Clone, Copy)]
pub struct Http2Limits {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, counted as RFC 9113 §6.5.2 counts it.
    pub max_header_list_size: u32,
    /// The client's preface and SETTINGS must arrive within this.
    pub handshake_timeout: Duration,
    /// Idle time before a PING, and how long its PONG may take.
    pub keep_alive: Option<Duration>,
}

/// The flow-control windows: actix-http's, so that switching dispatchers changed no throughput.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;
/// The connection's window until a request on it authenticates. What a client that proved
/// nothing can make the server hold of bodies waiting their turn (`limits.unproven`) is its
/// connection window, whatever its streams' windows: over 1024 such connections, 64 MiB at
/// most, where the window above would allow 2 GiB. Only the connection's window changes when
/// it grows (a WINDOW_UPDATE), not the streams' (a SETTINGS change would wait for the client's
/// acknowledgement of the first).
const UNPROVEN_CONNECTION_WINDOW: u32 = 64 * 1024;
/// Streams of a connection served at once until a request on it authenticates. Each stream in
/// flight is a request the App holds (its head, its task, its answer waiting its turn under
/// `limits.unproven`); a client that proved nothing keeps its further streams waiting in h2
/// (their heads only, their bodies within the connection window) until one ends.
const UNPROVEN_STREAMS: usize = 2;
/// The largest DATA frame the response body is cut into (h2's default max frame size).
const CHUNK: usize = 16_384;

impl Http2Limits {
    fn builder(&self) -> Builder {
        let mut builder = Builder::new();
        builder
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_header_list_size(self.max_header_list_size)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(UNPROVEN_CONNECTION_WINDOW);
        builder
    }
}

/// Serves one HTTP/2 connection to its end: each stream is a request to `service`, answered on
/// a task of its own on this worker thread.
pub async fn serve_connection<T, S, B>(
    io: T,
    peer: Option<SocketAddr>,
    connection_data: ConnectionData,
    service: Rc<S>,
    limits: Http2Limits,
) where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<Request> + 'static,
    S::Error: Into<Response<BoxBody>>,
    S::Response: Into<Response<B>>,
    B: MessageBody + 'static,
{
    let Ok(Ok(mut connection)) =
        tokio::time::timeout(limits.handshake_timeout, limits.builder().handshake(io)).await
    else {
        return;
    };
    let mut ping_pong = connection.ping_pong().expect("taken once, here");
    let mark = connection_data.get::<ConnectionMark>().cloned();
    let mut proven = mark.is_none();
    let in_flight = Rc::new(InFlight::default());
    let keep_alive = limits.keep_alive;
    let idle = tokio::time::sleep(keep_alive.unwrap_or(Duration::MAX));
    let mut idle = pin!(idle);
    let mut ping_in_flight = false;
    loop {
        let may_accept = proven || in_flight.count.get() < UNPROVEN_STREAMS;
        tokio::select! {
            accepted = next_stream(&mut connection, may_accept) => match accepted {
                Some(Ok((request, respond))) => {
                    let service = service.clone();
                    let data = connection_data.clone();
                    let stream = InFlight::enter(&in_flight);
                    actix_rt::spawn(async move {
                        serve_stream(&*service, request, respond, peer, data).await;
                        drop(stream);
                    });
                }
                // The client went, broke the protocol (h2 has answered it), or the GOAWAY
                // exchange is over.
                Some(Err(_)) | None => return,
            },
            () = in_flight.ended.notified(), if !may_accept => {}
            () = &mut idle, if keep_alive.is_some() => {
                if ping_in_flight || ping_pong.send_ping(Ping::opaque()).is_err() {
                    // No PONG within the keep-alive time: the peer is gone.
                    return;
                }
                ping_in_flight = true;
                idle.as_mut().reset(deadline(keep_alive));
            }
            () = until_authenticated(mark.as_ref()), if !proven => {
                // A request authenticated: the connection's window grows to what proven
                // clients get, and its streams are no longer served two at a time.
                proven = true;
                connection.set_target_window_size(CONNECTION_WINDOW);
            }
            pong = poll_fn(|cx| ping_pong.poll_pong(cx)), if ping_in_flight => {
                if pong.is_err() {
                    return;
                }
                ping_in_flight = false;
                idle.as_mut().reset(deadline(keep_alive));
            }
        }
    }
}

/// The streams of one connection being served, and a wake-up when one ends.
#[derive(Default)]
struct InFlight {
    count: std::cell::Cell<usize>,
    ended: tokio::sync::Notify,
}

/// One stream in flight, until dropped.
struct InFlightStream(Rc<InFlight>);

impl InFlight {
    fn enter(this: &Rc<Self>) -> InFlightStream {
        this.count.set(this.count.get() + 1);
        InFlightStream(this.clone())
    }
}

impl Drop for InFlightStream {
    fn drop(&mut self) {
        self.0.count.set(self.0.count.get() - 1);
        self.0.ended.notify_one();
    }
}

/// The next stream to serve, when `may_accept`; otherwise the connection is driven (frames
/// read, PINGs and WINDOW_UPDATEs answered) without taking one, until it closes: new streams
/// wait in h2 for the next call that may accept.
async fn next_stream<T: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut h2::server::Connection<T, Bytes>,
    may_accept: bool,
) -> Option<Result<(http::Request<RecvStream>, SendResponse<Bytes>), h2::Error>> {
    if may_accept {
        return connection.accept().await;
    }
    match poll_fn(|cx| connection.poll_closed(cx)).await {
        Ok(()) => None,
        Err(error) => Some(Err(error)),
    }
}

async fn until_authenticated(mark: Option<&ConnectionMark>) {
    match mark {
        Some(mark) => mark.until_authenticated().await,
        None => std::future::pending().await,
    }
}

fn deadline(after: Option<Duration>) -> tokio::time::Instant {
    tokio::time::Instant::now() + after.unwrap_or(Duration::MAX / 2)
}

/// One stream: the request to the App, its response to the client.
async fn serve_stream<S, B>(
    service: &S,
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    peer: Option<SocketAddr>,
    connection_data: ConnectionData,
) where
    S: Service<Request>,
    S::Error: Into<Response<BoxBody>>,
    S::Response: Into<Response<B>>,
    B: MessageBody,
{
    let (parts, body) = request.into_parts();
    let head_only = parts.method == http::Method::HEAD;
    let payload: BoxedPayloadStream = Box::pin(RequestBody(body));
    let mut request = Request::with_payload(Payload::Stream { payload });
    let head = request.head_mut();
    head.uri = parts.uri;
    head.method = parts.method;
    head.version = parts.version;
    head.headers = parts.headers.into();
    head.peer_addr = peer;
    request.extensions_mut().insert(connection_data);
    // Errors writing the answer mean the client reset the stream or went: nothing to tell it.
    let _ = match service.call(request).await {
        Ok(response) => send_response(response.into(), respond, head_only).await,
        Err(error) => send_response(error.into(), respond, head_only).await,
    };
}

/// A stream's request body as actix reads a payload; what is read is given back to the
/// client's flow-control window at once, as actix-http does.
struct RequestBody(RecvStream);

impl Stream for RequestBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let stream = &mut self.get_mut().0;
        match stream.poll_data(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let released = stream.flow_control().release_capacity(chunk.len());
                Poll::Ready(Some(released.map(|()| chunk).map_err(PayloadError::from)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Writes `response` to the stream: its head, then its body in frames the window allows.
async fn send_response<B: MessageBody>(
    response: Response<B>,
    mut respond: SendResponse<Bytes>,
    head_only: bool,
) -> Result<(), ()> {
    let (response, body) = response.into_parts();
    let mut size = body.size();
    let head = response_head(response.head(), &mut size);
    let ends_here = head_only || matches!(size, BodySize::None | BodySize::Sized(0));
    let mut stream = respond.send_response(head, ends_here).map_err(drop)?;
    if ends_here {
        return Ok(());
    }
    let mut body = pin!(body);
    while let Some(chunk) = poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        let mut chunk = chunk.map_err(drop)?;
        while !chunk.is_empty() {
            stream.reserve_capacity(cmp::min(chunk.len(), CHUNK));
            let Some(capacity) = poll_fn(|cx| stream.poll_capacity(cx)).await else {
                // The stream was reset: the rest of the body has nowhere to go.
                return Ok(());
            };
            let capacity = capacity.map_err(drop)?;
            let piece = chunk.split_to(cmp::min(chunk.len(), capacity));
            stream.send_data(piece, false).map_err(drop)?;
        }
    }
    stream.send_data(Bytes::new(), true).map_err(drop)
}

/// The HTTP/2 response head for an actix response: its status and fields, less the
/// connection-specific ones HTTP/2 forbids (RFC 9113 §8.2.2), with `content-length` from the
/// body's size and a `date`.
fn response_head(head: &ResponseHead, size: &mut BodySize) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() = head.status;
    *response.version_mut() = http::Version::HTTP_2;
    if matches!(
        head.status,
        http::StatusCode::NO_CONTENT | http::StatusCode::CONTINUE | http::StatusCode::PROCESSING
    ) {
        *size = BodySize::None;
    }
    let headers = response.headers_mut();
    let computed_length = match *size {
        BodySize::Sized(length) => {
            headers.insert(CONTENT_LENGTH, http::HeaderValue::from(length));
            true
        }
        BodySize::None | BodySize::Stream => false,
    };
    let mut has_date = false;
    for (name, value) in head.headers.iter() {
        match *name {
            CONNECTION | TRANSFER_ENCODING | UPGRADE => continue,
            CONTENT_LENGTH if computed_length => continue,
            DATE => has_date = true,
            _ => {}
        }
        headers.append(name.clone(), value.clone());
    }
    if !has_date {
        headers.insert(DATE, http_date());
    }
    response
}

/// Now as an HTTP date, formatted once a second per thread.
fn http_date() -> http::HeaderValue {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, Option<http::HeaderValue>)> =
            const { std::cell::RefCell::new((0, None)) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHED.with_borrow_mut(|(cached_second, value)| {
        if *cached_second != second || value.is_none() {
            *cached_second = second;
            *value = http::HeaderValue::from_str(&httpdate::fmt_http_date(now)).ok();
        }
        value.clone().unwrap_or(http::HeaderValue::from_static(""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, fields: &[(&'static str, &'static str)]) -> ResponseHead {
        let mut head = ResponseHead::new(http::StatusCode::from_u16(status).unwrap());
        for (name, value) in fields {
            head.headers.append(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            );
        }
        head
    }

    #[test]
    fn connection_specific_fields_are_dropped_and_the_length_comes_from_the_body() {
        let mut size = BodySize::Sized(12);
        let response = response_head(
            &head(
                200,
                &[
                    ("connection", "close"),
                    ("transfer-encoding", "chunked"),
                    ("upgrade", "h2c"),
                    ("content-length", "99"),
                    ("content-type", "application/json"),
                ],
            ),
            &mut size,
        );
        let headers = response.headers();
        assert!(headers.get("connection").is_none());
        assert!(headers.get("transfer-encoding").is_none());
        assert!(headers.get("upgrade").is_none());
        assert_eq!(headers.get_all("content-length").iter().count(), 1);
        assert_eq!(headers["content-length"], "12");
        assert_eq!(headers["content-type"], "application/json");
        assert!(headers.contains_key("date"));
        assert_eq!(response.version(), http::Version::HTTP_2);
    }

    #[test]
    fn a_streamed_body_keeps_no_length_and_a_204_has_no_body() {
        let mut size = BodySize::Stream;
        let response = response_head(&head(200, &[("content-length", "5")]), &mut size);
        assert_eq!(response.headers()["content-length"], "5");
        let mut size = BodySize::Sized(3);
        let response = response_head(&head(204, &[]), &mut size);
        assert_eq!(size, BodySize::None);
        assert_eq!(response.status(), 204);
        assert!(response.headers().get("content-length").is_none());
    }

    #[test]
    fn a_date_the_app_set_is_kept() {
        let mut size = BodySize::None;
        let response = response_head(
            &head(200, &[("date", "Thu, 01 Jan 1970 00:00:00 GMT")]),
            &mut size,
        );
        assert_eq!(
            response
                .headers()
                .get_all("date")
                .iter()
                .collect::<Vec<_>>(),
            ["Thu, 01 Jan 1970 00:00:00 GMT"]
        );
    }
}
