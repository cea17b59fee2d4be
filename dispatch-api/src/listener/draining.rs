//! A connection that closes itself gracefully when it is old enough or the server stops.
//!
//! actix-web closes an HTTP/1.1 connection after a response that says `Connection: close`
//! (`routes::middleware::close_aged_connections` does that), but has no way to send an HTTP/2
//! GOAWAY to one connection. So the listener puts this between TLS and the HTTP/2 server, and
//! does what h2's own graceful shutdown does (RFC 9113 §6.8): a GOAWAY that refuses nothing yet
//! and a PING; once the PING is acknowledged, every stream the client opened before it saw the
//! GOAWAY has been read, and a second GOAWAY names the last of them. The streams in flight
//! finish, the client opens its next ones on a new connection (a full handshake against the
//! current trust), and closes this one. No request is cut off or run twice.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frames::{ANY_STREAM, Inbound, Outbound, goaway, ping};

/// Resolves when the connection should go: its age, or the server stopping.
pub type Deadline = Pin<Box<dyn Future<Output = ()>>>;

/// Our PING's payload. The server never sees its acknowledgement.
const PING_PAYLOAD: [u8; 8] = *b"dispatch";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// The deadline passed: the first GOAWAY and the PING wait for the end of a frame.
    Announcing,
    /// Sent; waiting for the PING's acknowledgement.
    Announced,
    /// Acknowledged: the final GOAWAY waits for the end of a frame.
    Closing,
    Closed,
}

pub struct Draining<T> {
    io: T,
    /// Only HTTP/2 connections are read and written frame by frame.
    http2: bool,
    deadline: Option<Deadline>,
    phase: Phase,
    outbound: Outbound,
    inbound: Inbound,
    /// Bytes of our frames not yet written.
    injection: Vec<u8>,
    injected: usize,
    flush: bool,
    /// Bytes read and passed by `inbound` that did not fit the caller's buffer.
    readable: Vec<u8>,
    delivered: usize,
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
            injection: Vec::new(),
            injected: 0,
            flush: false,
            readable: Vec::new(),
            delivered: 0,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Draining<T> {
    /// Moves on from `Serving` once the deadline passes, and queues our frames when the
    /// server is between two of its own.
    fn advance(&mut self, cx: &mut Context<'_>) {
        if self.phase == Phase::Serving
            && let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.deadline = None;
            self.phase = Phase::Announcing;
        }
        if self.inbound.acknowledged() && self.phase == Phase::Announced {
            self.phase = Phase::Closing;
        }
        if self.injection.is_empty() && self.outbound.may_insert() {
            match self.phase {
                Phase::Announcing => {
                    self.injection.extend_from_slice(&goaway(ANY_STREAM));
                    self.injection.extend_from_slice(&ping(PING_PAYLOAD));
                    self.inbound.await_ack(PING_PAYLOAD);
                    self.phase = Phase::Announced;
                }
                Phase::Closing => {
                    self.injection
                        .extend_from_slice(&goaway(self.inbound.last_stream()));
                    self.phase = Phase::Closed;
                }
                Phase::Serving | Phase::Announced | Phase::Closed => {}
            }
        }
    }

    /// Writes our queued frames, then flushes them.
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
        self.injection.clear();
        self.injected = 0;
        if self.flush {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// The server's frames are written up to the end of a frame while one of ours waits.
    fn writable_len(&self, buf: &[u8]) -> usize {
        match self.phase {
            Phase::Announcing | Phase::Closing => self.outbound.until_frame_end(buf),
            Phase::Serving | Phase::Announced | Phase::Closed => buf.len(),
        }
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
        // An idle connection is only ever read: the deadline is watched, and our frames
        // written, from here too.
        this.advance(cx);
        if let Poll::Ready(Err(error)) = this.poll_inject(cx) {
            return Poll::Ready(Err(error));
        }
        if this.delivered < this.readable.len() {
            let n = (this.readable.len() - this.delivered).min(buf.remaining());
            buf.put_slice(&this.readable[this.delivered..this.delivered + n]);
            this.delivered += n;
            return Poll::Ready(Ok(()));
        }
        loop {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            if buf.filled().len() == before {
                return Poll::Ready(Ok(())); // end of stream
            }
            this.readable.clear();
            this.delivered = 0;
            this.inbound
                .feed(&buf.filled()[before..], &mut this.readable);
            buf.set_filled(before);
            let n = this.readable.len().min(buf.remaining());
            buf.put_slice(&this.readable[..n]);
            this.delivered = n;
            if this.inbound.acknowledged() && this.phase == Phase::Announced {
                this.advance(cx);
                if let Poll::Ready(Err(error)) = this.poll_inject(cx) {
                    return Poll::Ready(Err(error));
                }
            }
            // Nothing for the server (a frame header held, or our PING's acknowledgement
            // taken out): read on, since an empty read would mean the end of the stream.
            if n > 0 {
                return Poll::Ready(Ok(()));
            }
        }
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
        let len = this.writable_len(buf);
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, &buf[..len]))?;
        this.outbound.advance(&buf[..n]);
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

    /// The deadline passes while the server is in the middle of a frame and the connection is
    /// otherwise idle: our frames follow that frame, the acknowledgement never reaches the
    /// server, and the final GOAWAY names the last stream the client opened.
    #[tokio::test]
    async fn an_aged_http2_connection_gets_goaway_ping_then_goaway_naming_the_last_stream() {
        let (server_end, mut client) = duplex(1 << 16);
        let (fire, fired) = tokio::sync::oneshot::channel::<()>();
        let mut server = Draining::http2(
            server_end,
            Box::pin(async move {
                let _ = fired.await;
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
        // Half a DATA frame out, then the deadline.
        let data = frame(0x0, 0x1, 1, &[7; 30]);
        server.write_all(&data[..20]).await.unwrap();
        fire.send(()).unwrap();
        tokio::task::yield_now().await;
        server.write_all(&data[20..]).await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(
            next_frame(&mut client).await,
            (0x4, 0, 0, settings[9..].to_vec())
        );
        assert_eq!(next_frame(&mut client).await, (0x0, 0x1, 1, vec![7; 30]));
        let first = next_frame(&mut client).await;
        assert_eq!(first, (0x7, 0, 0, vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]));
        let (kind, flags, _, payload) = next_frame(&mut client).await;
        assert_eq!((kind, flags), (0x6, 0));
        // The client opened stream 5 before it saw the GOAWAY, then acknowledges the PING.
        client
            .write_all(&frame(0x1, 0x5, 5, &[0x82]))
            .await
            .unwrap();
        client
            .write_all(&frame(0x6, 0x1, 0, &payload))
            .await
            .unwrap();
        // The server reads on (as an HTTP/2 server always does) until the client is gone.
        let mut rest = Vec::new();
        let (last, read) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(
                async move {
                    let last = next_frame(&mut client).await;
                    drop(client);
                    last
                },
                server.read_to_end(&mut rest)
            )
        })
        .await
        .unwrap();
        read.unwrap();
        assert_eq!(last, (0x7, 0, 0, vec![0, 0, 0, 5, 0, 0, 0, 0]));
        assert_eq!(
            rest,
            frame(0x1, 0x5, 5, &[0x82]),
            "the server reads stream 5, and nothing of the acknowledgement"
        );
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
