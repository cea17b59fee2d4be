//! The request body between the connection and the handlers.
//!
//! Two bounds nginx users know as `client_body_timeout` and `lingering_close`:
//! - a read timeout between two chunks of the body (`limits.body_timeout_secs`): a client that
//!   stops sending mid-body gets 408 instead of holding a connection and a worker's memory;
//! - once an answer is ready, what is left of a body nobody read is read and discarded before
//!   the answer goes out: within `limits.drain_secs`, and over HTTP/1.1 up to
//!   `limits.drain_bytes` (HTTP/2 flow control paces the client, so its bound is time). An early
//!   answer (401, 403, 404, 413, ...) then reaches the client whole: over HTTP/1.1 the client is
//!   not cut off mid-upload, and over HTTP/2 the stream ends after the client's last DATA frame
//!   rather than with a reset that some clients (curl 7.88 with nghttp2) report as a framing
//!   error instead of the response. A body past the bound is not read: HTTP/1.1 connections
//!   are then closed after the answer, HTTP/2 streams are ended as RFC 9113 §8.1 allows
//!   (the answer, then RST_STREAM with NO_ERROR). So is, at once, an HTTP/2 body none of which
//!   has arrived when the answer is ready: a stream opened and left without a body holds no
//!   slot of `limits.http2_max_concurrent_streams` for `drain_secs`.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// How reading the body ended, as far as the exchange is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOutcome {
    /// Read to its end (by a handler, or drained).
    Ended,
    /// The client stopped sending for longer than the read timeout.
    TimedOut,
    /// Left unread: larger than the drain bound, not finished within its time, or broken.
    Cut,
    /// Nothing of it had arrived when the answer was ready (HTTP/2: left unread, the stream
    /// is ended after the answer).
    NotStarted,
}

struct Body {
    payload: Payload,
    timeout: Duration,
    /// Armed while a read waits for the client; disarmed by each chunk.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    outcome: Option<BodyOutcome>,
    /// Some of it (or its end) has been read.
    started: bool,
}

/// The request body, shared between the handler (as its payload) and the middleware that
/// drains it afterwards. One per request, on one worker thread.
#[derive(Clone)]
pub struct WatchedBody(Rc<RefCell<Body>>);

impl WatchedBody {
    pub fn new(payload: Payload, timeout: Duration) -> Self {
        Self(Rc::new(RefCell::new(Body {
            payload,
            timeout,
            idle: None,
            outcome: None,
            started: false,
        })))
    }

    /// The payload to give the handlers: reads go through this body.
    pub fn payload(&self) -> Payload {
        Payload::Stream {
            payload: Box::pin(self.clone()),
        }
    }

    /// Set once the body ended, timed out or broke; `None` while some of it is unread.
    pub fn outcome(&self) -> Option<BodyOutcome> {
        self.0.borrow().outcome
    }

    /// Reads and discards the rest of the body: at most `max_bytes` more, within `within`.
    /// Says how it ended and how many bytes were discarded. With a `start_grace`, a body none
    /// of which has been read is waited for only that long (within `within`): if nothing of it
    /// arrives meanwhile it is left as it is, `NotStarted`.
    pub async fn drain(
        &self,
        max_bytes: usize,
        within: Duration,
        start_grace: Option<Duration>,
    ) -> (BodyOutcome, usize) {
        if let Some(outcome) = self.outcome() {
            return (outcome, 0);
        }
        let mut reader = self.clone();
        let mut discarded = 0;
        if let Some(grace) = start_grace.filter(|_| !self.0.borrow().started) {
            let first = poll_fn(|cx| Pin::new(&mut reader).poll_next(cx));
            match tokio::time::timeout(grace.min(within), first).await {
                Err(_) => {
                    self.0.borrow_mut().outcome = Some(BodyOutcome::NotStarted);
                    return (BodyOutcome::NotStarted, 0);
                }
                Ok(None) => return (BodyOutcome::Ended, 0),
                Ok(Some(Ok(chunk))) if chunk.len() <= max_bytes => discarded = chunk.len(),
                Ok(Some(_)) => return (self.outcome().unwrap_or(BodyOutcome::Cut), 0),
            }
        }
        let read = async {
            while let Some(chunk) = poll_fn(|cx| Pin::new(&mut reader).poll_next(cx)).await {
                match chunk {
                    Ok(chunk) if chunk.len() <= max_bytes - discarded => discarded += chunk.len(),
                    Ok(_) => return BodyOutcome::Cut,
                    Err(_) => return self.outcome().unwrap_or(BodyOutcome::Cut),
                }
            }
            BodyOutcome::Ended
        };
        let outcome = tokio::time::timeout(within, read)
            .await
            .unwrap_or(BodyOutcome::Cut);
        self.0.borrow_mut().outcome = Some(outcome);
        (outcome, discarded)
    }
}

/// What a handler sees when the client stops sending: an I/O error of kind `TimedOut`, which
/// [`is_timeout`] recognises (the JSON extractor maps it to 408).
fn timeout_error() -> PayloadError {
    PayloadError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        "the client sent no more of the request body within limits.body_timeout_secs",
    ))
}

/// Whether a payload error is this module's read timeout.
pub fn is_timeout(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(e) if e.kind() == io::ErrorKind::TimedOut)
}

impl Stream for WatchedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut body = self.0.borrow_mut();
        match body.outcome {
            Some(BodyOutcome::Ended | BodyOutcome::Cut | BodyOutcome::NotStarted) => {
                return Poll::Ready(None);
            }
            Some(BodyOutcome::TimedOut) => return Poll::Ready(Some(Err(timeout_error()))),
            None => {}
        }
        match Pin::new(&mut body.payload).poll_next(cx) {
            Poll::Ready(None) => {
                body.idle = None;
                body.outcome = Some(BodyOutcome::Ended);
                body.started = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(chunk))) => {
                body.idle = None;
                body.started = true;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => {
                body.idle = None;
                body.outcome = Some(BodyOutcome::Cut);
                Poll::Ready(Some(Err(error)))
            }
            Poll::Pending => {
                let timeout = body.timeout;
                let idle = body
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if idle.as_mut().poll(cx).is_ready() {
                    body.idle = None;
                    body.outcome = Some(BodyOutcome::TimedOut);
                    return Poll::Ready(Some(Err(timeout_error())));
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use futures_util::stream;

    use super::*;

    fn chunks(sizes: &[usize]) -> Payload {
        let items: Vec<Result<Bytes, PayloadError>> = sizes
            .iter()
            .map(|n| Ok(Bytes::from(vec![b'x'; *n])))
            .collect();
        Payload::Stream {
            payload: Box::pin(stream::iter(items)),
        }
    }

    /// A body that sends `first` bytes and then nothing, never ending.
    fn stalled(first: usize) -> Payload {
        let head = stream::iter([Ok(Bytes::from(vec![b'x'; first]))]);
        Payload::Stream {
            payload: Box::pin(head.chain(stream::pending())),
        }
    }

    const LONG: Duration = Duration::from_secs(5);

    #[actix_rt::test]
    async fn a_body_read_by_the_handler_to_its_end_needs_no_draining() {
        let body = WatchedBody::new(chunks(&[3, 4]), LONG);
        let mut payload = body.payload();
        assert_eq!(body.outcome(), None);
        let mut read = 0;
        while let Some(chunk) = payload.next().await {
            read += chunk.unwrap().len();
        }
        assert_eq!(read, 7);
        assert_eq!(body.outcome(), Some(BodyOutcome::Ended));
        assert_eq!(body.drain(0, LONG, None).await, (BodyOutcome::Ended, 0));
    }

    #[actix_rt::test]
    async fn an_unread_body_within_the_bound_is_drained_to_its_end() {
        let body = WatchedBody::new(chunks(&[100, 200, 300]), LONG);
        assert_eq!(body.drain(600, LONG, None).await, (BodyOutcome::Ended, 600));
        assert_eq!(body.outcome(), Some(BodyOutcome::Ended));
    }

    #[actix_rt::test]
    async fn an_unread_body_past_the_bound_is_cut() {
        let body = WatchedBody::new(chunks(&[100, 200, 300]), LONG);
        assert_eq!(body.drain(599, LONG, None).await.0, BodyOutcome::Cut);
        assert_eq!(body.outcome(), Some(BodyOutcome::Cut));
        let mut payload = body.payload();
        assert!(payload.next().await.is_none(), "a cut body reads as ended");
    }

    #[actix_rt::test]
    async fn a_partly_read_body_is_drained_from_where_the_handler_stopped() {
        let body = WatchedBody::new(chunks(&[500, 100]), LONG);
        let mut payload = body.payload();
        assert_eq!(payload.next().await.unwrap().unwrap().len(), 500);
        assert_eq!(body.drain(100, LONG, None).await, (BodyOutcome::Ended, 100));
    }

    #[actix_rt::test]
    async fn a_stalled_body_is_cut_by_the_drain_time() {
        let body = WatchedBody::new(stalled(10), LONG);
        let outcome = body.drain(1 << 20, Duration::from_millis(50), None).await;
        assert_eq!(outcome.0, BodyOutcome::Cut);
    }

    #[actix_rt::test]
    async fn a_client_that_stops_sending_gets_the_read_timeout() {
        let body = WatchedBody::new(stalled(10), Duration::from_millis(50));
        let mut payload = body.payload();
        assert_eq!(payload.next().await.unwrap().unwrap().len(), 10);
        let error = payload.next().await.unwrap().unwrap_err();
        assert!(is_timeout(&error), "{error}");
        assert_eq!(body.outcome(), Some(BodyOutcome::TimedOut));
        assert!(is_timeout(&payload.next().await.unwrap().unwrap_err()));
        assert_eq!(
            body.drain(1 << 20, LONG, None).await,
            (BodyOutcome::TimedOut, 0)
        );
        assert!(!is_timeout(&PayloadError::Incomplete(None)));
    }

    #[actix_rt::test]
    async fn a_broken_body_is_not_drained() {
        let items: Vec<Result<Bytes, PayloadError>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Err(PayloadError::Incomplete(None)),
        ];
        let body = WatchedBody::new(
            Payload::Stream {
                payload: Box::pin(stream::iter(items)),
            },
            LONG,
        );
        assert_eq!(body.drain(1 << 20, LONG, None).await.0, BodyOutcome::Cut);
    }

    #[actix_rt::test]
    async fn no_body_at_all_ends_at_once_with_nothing_discarded() {
        let body = WatchedBody::new(Payload::None, LONG);
        assert_eq!(
            body.drain(1 << 20, LONG, None).await,
            (BodyOutcome::Ended, 0)
        );
    }

    const GRACE: Duration = Duration::from_millis(200);

    #[actix_rt::test]
    async fn an_http2_body_that_does_not_start_within_the_grace_is_left() {
        let body = WatchedBody::new(
            Payload::Stream {
                payload: Box::pin(stream::pending()),
            },
            LONG,
        );
        assert_eq!(
            body.drain(1 << 20, LONG, Some(Duration::from_millis(20)))
                .await,
            (BodyOutcome::NotStarted, 0)
        );
        assert_eq!(body.outcome(), Some(BodyOutcome::NotStarted));
        assert!(body.payload().next().await.is_none());
    }

    #[actix_rt::test]
    async fn an_http2_body_whose_first_chunk_comes_late_within_the_grace_is_drained() {
        let late = stream::once(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Bytes::from_static(b"late"))
        });
        let body = WatchedBody::new(
            Payload::Stream {
                payload: Box::pin(late),
            },
            LONG,
        );
        assert_eq!(
            body.drain(1 << 20, LONG, Some(GRACE)).await,
            (BodyOutcome::Ended, 4)
        );
    }

    #[actix_rt::test]
    async fn an_http2_body_that_has_started_is_drained_as_any_other() {
        let body = WatchedBody::new(chunks(&[100, 200]), LONG);
        assert_eq!(
            body.drain(1 << 20, LONG, Some(GRACE)).await,
            (BodyOutcome::Ended, 300)
        );
        let body = WatchedBody::new(chunks(&[100, 200]), LONG);
        assert_eq!(body.drain(150, LONG, Some(GRACE)).await.0, BodyOutcome::Cut);
        let body = WatchedBody::new(chunks(&[200]), LONG);
        assert_eq!(body.drain(150, LONG, Some(GRACE)).await.0, BodyOutcome::Cut);
        let body = WatchedBody::new(chunks(&[]), LONG);
        assert_eq!(
            body.drain(0, LONG, Some(GRACE)).await,
            (BodyOutcome::Ended, 0)
        );
    }

    #[actix_rt::test]
    async fn a_body_the_handler_began_to_read_is_drained_even_when_nothing_more_has_arrived() {
        let body = WatchedBody::new(stalled(10), Duration::from_millis(50));
        let mut payload = body.payload();
        assert_eq!(payload.next().await.unwrap().unwrap().len(), 10);
        assert_eq!(
            body.drain(1 << 20, LONG, Some(GRACE)).await,
            (BodyOutcome::TimedOut, 0)
        );
    }
}
