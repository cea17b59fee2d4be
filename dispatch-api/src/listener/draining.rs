//! A connection that closes itself gracefully when it is old enough or the server stops.
//!
//! actix-web closes an HTTP/1.1 connection after a response that says `Connection: close`
//! (`routes::middleware::close_aged_connections` does that), but has no way to send an HTTP/2
//! GOAWAY to one connection. So the listener puts this between TLS and the HTTP/2 server.
//! Once the deadline has passed and no stream has been in flight (every stream the client
//! opened answered to its end, or reset) for the quiet time the deadline names, it sends a
//! GOAWAY naming the last stream the client opened, and ends what the server reads: anything
//! the client sends after that, a new stream included, never reaches the server, so a stream
//! the GOAWAY refuses was not processed and the client may send it again on a new connection
//! (RFC 9113 §6.8).
//!
//! Why not the two-step GOAWAY with a PING of §6.8, as h2's own graceful shutdown does: Python's
//! h2 fails the connection on any frame after a GOAWAY, the PING included, and httpx over it
//! (httpcore 0.16, as Debian ships it) then fails every later request on that client
//! (encode/httpcore#1054). So an aged connection is closed only after it has been quiet longer
//! than httpx keeps an idle connection (5 s): a client that sends more often is never cut, and
//! one that was quiet that long has let the connection go. A connection that is never quiet
//! stays open; its requests are still checked one by one.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frames::{Inbound, Outbound, goaway};

/// Resolves when the connection should go (its age, or the server stopping) to how long it must
/// then have been quiet before the GOAWAY.
pub type Deadline = Pin<Box<dyn Future<Output = std::time::Duration>>>;

/// How long, after the GOAWAY, what the client still sends is read and dropped before the
/// server sees the end of the stream: closing a socket with unread bytes sends a reset, which
/// can reach the client before it has read the GOAWAY.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// The deadline passed: the GOAWAY waits for a moment with no stream in flight, between
    /// two of the server's frames.
    Draining,
    /// The GOAWAY is queued or sent; the server reads nothing more.
    Closed,
}

pub struct Draining<T> {
    io: T,
    /// Only HTTP/2 connections are watched frame by frame.
    http2: bool,
    deadline: Option<Deadline>,
    phase: Phase,
    outbound: Outbound,
    inbound: Inbound,
    /// Streams the server's last write ended.
    ended: Vec<u32>,
    /// Bytes of the GOAWAY not yet written.
    injection: Vec<u8>,
    injected: usize,
    flush: bool,
    /// Set once the GOAWAY is out: until then the client's bytes are dropped.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    /// How long the connection must be quiet before the GOAWAY, and the time it has been.
    quiet_for: std::time::Duration,
    quiet: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Draining<T> {
    /// An HTTP/2 connection, drained once `deadline` resolves.
    pub fn http2(io: T, deadline: Deadline) -> Self {
        Self {
            http2: true,
            deadline: Some(deadline),
            ..Self::http1(io)
        }
    }

    /// An HTTP/1.1 connection: passed through (`Connection: close` ends it).
    pub fn http1(io: T) -> Self {
        Self {
            io,
            http2: false,
            deadline: None,
            phase: Phase::Serving,
            outbound: Outbound::default(),
            inbound: Inbound::default(),
            ended: Vec::new(),
            injection: Vec::new(),
            injected: 0,
            flush: false,
            linger: None,
            quiet_for: std::time::Duration::ZERO,
            quiet: None,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Draining<T> {
    /// Moves on from `Serving` once the deadline passes, and queues the GOAWAY once no stream
    /// has been in flight for the quiet time, between two of the server's frames.
    fn advance(&mut self, cx: &mut Context<'_>) {
        if self.phase == Phase::Serving
            && let Some(deadline) = self.deadline.as_mut()
            && let Poll::Ready(quiet_for) = deadline.as_mut().poll(cx)
        {
            self.deadline = None;
            self.quiet_for = quiet_for;
            self.phase = Phase::Draining;
        }
        if self.phase != Phase::Draining {
            return;
        }
        if !self.inbound.idle() {
            // A stream in flight: the quiet time starts again once it has ended.
            self.quiet = None;
            return;
        }
        let quiet_for = self.quiet_for;
        let quiet_long_enough = quiet_for.is_zero()
            || self
                .quiet
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(quiet_for)))
                .as_mut()
                .poll(cx)
                .is_ready();
        if quiet_long_enough && self.outbound.may_insert() {
            self.injection
                .extend_from_slice(&goaway(self.inbound.last_stream()));
            self.phase = Phase::Closed;
        }
    }

    /// Writes the queued GOAWAY, then flushes it.
    fn poll_inject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.injected < self.injection.len() {
            let n =
                ready!(Pin::new(&mut self.io).poll_write(cx, &self.injection[self.injected..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.injected += n;
            self.flush = true;
        }
        if self.flush {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.flush = false;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Draining<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.http2 {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        // An idle connection is only ever read: the deadline is watched, and the GOAWAY
        // written, from here too.
        this.advance(cx);
        if this.phase == Phase::Closed {
            // Once the GOAWAY is out, what the client sends after it (a stream the GOAWAY
            // refuses, say) is dropped, never processed; the server reads the end of the
            // stream when the client closes, or after LINGER.
            ready!(this.poll_inject(cx))?;
            let linger = this
                .linger
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
            let mut scratch = [0u8; 4096];
            loop {
                if linger.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
                let mut dropped = ReadBuf::new(&mut scratch);
                ready!(Pin::new(&mut this.io).poll_read(cx, &mut dropped))?;
                if dropped.filled().is_empty() {
                    return Poll::Ready(Ok(()));
                }
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.inbound.observe(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Draining<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.http2 {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        }
        this.advance(cx);
        ready!(this.poll_inject(cx))?;
        // While draining, the server's frames go out one at a time, so that the GOAWAY can
        // follow the frame that ends the last stream in flight.
        let len = match this.phase {
            Phase::Draining => this.outbound.until_frame_end(buf),
            Phase::Serving | Phase::Closed => buf.len(),
        };
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, &buf[..len]))?;
        this.outbound.advance(&buf[..n], &mut this.ended);
        for stream in this.ended.drain(..) {
            this.inbound.ended(stream);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.http2 {
            this.advance(cx);
            ready!(this.poll_inject(cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.http2 {
            ready!(this.poll_inject(cx))?;
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::super::frames::testing::{PREFACE, frame};
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    /// Reads one whole frame from the client's end.
    async fn next_frame(client: &mut tokio::io::DuplexStream) -> (u8, u8, u32, Vec<u8>) {
        let mut header = [0; 9];
        client.read_exact(&mut header).await.unwrap();
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let mut payload = vec![0; length];
        client.read_exact(&mut payload).await.unwrap();
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        (header[3], header[4], stream, payload)
    }

    /// The deadline passes while two streams are in flight and the server is in the middle of
    /// a frame: no GOAWAY until the server has ended both, then one GOAWAY naming the last
    /// stream, and the server reads nothing more (not the stream the client opened after).
    #[tokio::test]
    async fn an_aged_http2_connection_gets_goaway_once_nothing_is_in_flight() {
        let (server_end, mut client) = duplex(1 << 16);
        let (fire, fired) = tokio::sync::oneshot::channel::<()>();
        let mut server = Draining::http2(
            server_end,
            Box::pin(async move {
                let _ = fired.await;
                Duration::ZERO
            }),
        );
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        server.write_all(&settings).await.unwrap();
        client.write_all(PREFACE).await.unwrap();
        client
            .write_all(&frame(0x1, 0x4, 1, &[0x82]))
            .await
            .unwrap();
        client
            .write_all(&frame(0x1, 0x5, 3, &[0x82]))
            .await
            .unwrap();
        let mut seen = vec![0; PREFACE.len() + 2 * 10];
        server.read_exact(&mut seen).await.unwrap();
        // Half of stream 1's last DATA frame out, then the deadline.
        let data = frame(0x0, 0x1, 1, &[7; 30]);
        server.write_all(&data[..20]).await.unwrap();
        fire.send(()).unwrap();
        tokio::task::yield_now().await;
        server.write_all(&data[20..]).await.unwrap();
        server.flush().await.unwrap();
        // Stream 3 is still in flight: the server answers it, and only then comes the GOAWAY.
        let answer = frame(0x1, 0x5, 3, &[0x88]);
        server.write_all(&answer).await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(
            next_frame(&mut client).await,
            (0x4, 0, 0, settings[9..].to_vec())
        );
        assert_eq!(next_frame(&mut client).await, (0x0, 0x1, 1, vec![7; 30]));
        assert_eq!(next_frame(&mut client).await, (0x1, 0x5, 3, vec![0x88]));
        // The client opens stream 5 before it sees the GOAWAY; the server never reads it.
        client
            .write_all(&frame(0x1, 0x5, 5, &[0x82]))
            .await
            .unwrap();
        let mut rest = Vec::new();
        let (last, read) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(next_frame(&mut client), server.read_to_end(&mut rest))
        })
        .await
        .unwrap();
        read.unwrap();
        assert_eq!(last, (0x7, 0, 0, vec![0, 0, 0, 3, 0, 0, 0, 0]));
        assert!(
            rest.is_empty(),
            "the server read nothing after the GOAWAY: {rest:?}"
        );
    }

    #[tokio::test]
    async fn an_http2_connection_before_its_deadline_passes_everything_through() {
        let (server_end, mut client) = duplex(1 << 16);
        let mut server = Draining::http2(server_end, Box::pin(std::future::pending()));
        // (A deadline that never comes.)
        let settings = frame(0x4, 0, 0, &[]);
        server.write_all(&settings).await.unwrap();
        client.write_all(PREFACE).await.unwrap();
        let mut preface = vec![0; PREFACE.len()];
        server.read_exact(&mut preface).await.unwrap();
        server.flush().await.unwrap();
        drop(server);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, settings, "no GOAWAY");
    }

    #[tokio::test]
    async fn an_http1_connection_passes_through_untouched() {
        let (server_end, mut client) = duplex(1 << 16);
        let mut server = Draining::http1(server_end);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut request = [0; 18];
        server.read_exact(&mut request).await.unwrap();
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        drop(server);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"HTTP/1.1 200 OK\r\n\r\n");
    }
}
