//! HTTP/2 limits, seen in raw frames as a hostile client sends them: the SETTINGS the server
//! advertises, a stream past SETTINGS_MAX_CONCURRENT_STREAMS refused, a header list past its
//! bound refused before it is held, and a stream answered early whose body never starts ended
//! at once instead of held for `limits.drain_secs`.

use std::sync::Arc;
use std::time::Duration;

use e2e::{TestApp, spawn_app_with};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
const NO_ERROR: u32 = 0x0;
const REFUSED_STREAM: u32 = 0x7;

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// An HTTP/2 connection driven frame by frame, anonymous (no client certificate).
struct RawH2(TlsStream<TcpStream>);

impl RawH2 {
    async fn connect(app: &TestApp) -> Self {
        let mut config = e2e::http::client_config(&app.pki.ca_file, None);
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(("127.0.0.1", app.https_port))
            .await
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls.write_all(PREFACE).await.unwrap();
        let mut raw = Self(tls);
        raw.send(SETTINGS, 0, 0, &[]).await;
        raw
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut frame = vec![length[1], length[2], length[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.0.write_all(&frame).await.unwrap();
        self.0.flush().await.unwrap();
    }

    /// A request's header block, split into HEADERS and CONTINUATION frames of 16 KiB.
    async fn open(&mut self, stream: u32, block: &[u8], end_stream: bool) {
        let mut pieces = block.chunks(16_384).peekable();
        let mut kind = HEADERS;
        let mut flags = if end_stream { END_STREAM } else { 0 };
        while let Some(piece) = pieces.next() {
            if pieces.peek().is_none() {
                flags |= END_HEADERS;
            }
            self.send(kind, flags, stream, piece).await;
            kind = CONTINUATION;
            flags = 0;
        }
    }

    /// The next frame, or `None` if the server closed the connection.
    async fn next(&mut self) -> Option<Frame> {
        let mut header = [0; 9];
        self.0.read_exact(&mut header).await.ok()?;
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let mut payload = vec![0; length];
        self.0.read_exact(&mut payload).await.ok()?;
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        Some(Frame {
            kind: header[3],
            flags: header[4],
            stream,
            payload,
        })
    }

    /// Frames until `done` says so, acknowledging the server's SETTINGS; fails after 10 s.
    async fn until(&mut self, mut done: impl FnMut(&Frame) -> bool) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let Ok(frame) = tokio::time::timeout_at(deadline, self.next()).await else {
                panic!("no awaited frame within 10 s; frames: {seen:?}");
            };
            let Some(frame) = frame else {
                panic!("the server closed the connection; frames: {seen:?}");
            };
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                self.send(SETTINGS, ACK, 0, &[]).await;
            }
            let stop = done(&frame);
            seen.push(frame);
            if stop {
                return seen;
            }
        }
    }
}

/// HPACK for a request from the static table only: `:method` (GET or POST), `:scheme https`,
/// `:path` as a literal, `:authority localhost`, and `extra` as literal fields without
/// indexing (RFC 7541 §6.2.2), no Huffman.
fn header_block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = vec![if method == "GET" { 0x82 } else { 0x83 }, 0x87];
    literal_with_indexed_name(&mut block, 4, path);
    literal_with_indexed_name(&mut block, 1, "localhost");
    for (name, value) in extra {
        block.push(0x00);
        string(&mut block, name);
        string(&mut block, value);
    }
    block
}

fn literal_with_indexed_name(block: &mut Vec<u8>, index: u8, value: &str) {
    block.push(index); // 0000 + 4-bit index: literal without indexing
    string(block, value);
}

/// An HPACK string literal, not Huffman-coded, its length a 7-bit-prefix integer.
fn string(block: &mut Vec<u8>, value: &str) {
    let mut length = value.len();
    if length < 127 {
        block.push(u8::try_from(length).unwrap());
    } else {
        block.push(127);
        length -= 127;
        while length >= 128 {
            block.push(u8::try_from(length % 128).unwrap() | 0x80);
            length /= 128;
        }
        block.push(u8::try_from(length).unwrap());
    }
    block.extend_from_slice(value.as_bytes());
}

fn settings(frame: &Frame) -> Vec<(u16, u32)> {
    frame
        .payload
        .chunks(6)
        .map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
            )
        })
        .collect()
}

fn reset_code(frame: &Frame) -> Option<u32> {
    (frame.kind == RST_STREAM).then(|| u32::from_be_bytes(frame.payload[..4].try_into().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_settings_advertise_the_stream_and_header_list_limits() {
    let app = spawn_app_with(|s| {
        s.limits.http2_max_concurrent_streams = 7;
        s.limits.max_header_bytes = 4096;
    })
    .await;
    let mut raw = RawH2::connect(&app).await;
    let frames = raw
        .until(|f| f.kind == SETTINGS && f.flags & ACK == 0)
        .await;
    let advertised = settings(frames.last().unwrap());
    assert!(
        advertised.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, 7)),
        "{advertised:?}"
    );
    let header_list = app.settings.limits.http2_max_header_list_size();
    assert_eq!(header_list, 2 * 4096 + 16 * 1024);
    assert!(
        advertised.contains(&(SETTINGS_MAX_HEADER_LIST_SIZE, header_list)),
        "{advertised:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_past_the_concurrent_limit_are_refused_and_the_rest_answered() {
    let app = spawn_app_with(|s| s.limits.http2_max_concurrent_streams = 4).await;
    let mut raw = RawH2::connect(&app).await;
    raw.until(|f| f.kind == SETTINGS && f.flags & ACK != 0)
        .await;
    // Ten streams whose bodies never come: four may be open at once.
    let block = header_block(
        "POST",
        "/api/dispatch-plans",
        &[("content-type", "application/json")],
    );
    for i in 0..10 {
        raw.open(1 + 2 * i, &block, false).await;
    }
    let (mut refused, mut answered, mut ended) = (Vec::new(), Vec::new(), Vec::new());
    raw.until(|f| {
        match (f.kind, reset_code(f)) {
            (_, Some(REFUSED_STREAM)) => refused.push(f.stream),
            (_, Some(NO_ERROR)) => ended.push(f.stream),
            (HEADERS, _) => answered.push(f.stream),
            _ => {}
        }
        refused.len() == 6 && ended.len() == 4
    })
    .await;
    refused.sort_unstable();
    answered.sort_unstable();
    ended.sort_unstable();
    assert_eq!(refused, [9, 11, 13, 15, 17, 19]);
    // The four within the limit are answered (401: anonymous) and then ended.
    assert_eq!(answered, [1, 3, 5, 7]);
    assert_eq!(ended, [1, 3, 5, 7]);
}

/// A GET of the plans over `send` with an `x-filler` field of `filler` bytes: its status and
/// content type.
async fn get_with_filler(
    app: &TestApp,
    send: &mut h2::client::SendRequest<bytes::Bytes>,
    filler: usize,
) -> (u16, Option<String>) {
    let request = http::Request::get(format!(
        "https://localhost:{}/api/dispatch-plans",
        app.https_port
    ))
    .header("x-filler", "f".repeat(filler))
    .body(())
    .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), content_type)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_a_header_list_past_its_bound_is_refused_by_h2_and_the_connection_stays_usable() {
    let app = spawn_app_with(|s| s.limits.max_header_bytes = 1024).await;
    let bound = app.settings.limits.http2_max_header_list_size() as usize;
    let (mut send, _connection) = e2e::http::connect_h2(app.https_port, &app.pki.ca_file, None)
        .await
        .unwrap();
    // h2's own 431: no problem document, the list never held whole.
    assert_eq!(
        get_with_filler(&app, &mut send, bound + 1).await,
        (431, None)
    );
    // The HPACK state survived: the next stream on the connection is served.
    let (status, content_type) = get_with_filler(&app, &mut send, 10).await;
    assert_eq!(status, 401);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_a_header_list_over_max_header_bytes_but_within_the_bound_gets_the_431_problem() {
    let app = spawn_app_with(|s| s.limits.max_header_bytes = 1024).await;
    let (mut send, _connection) = e2e::http::connect_h2(app.https_port, &app.pki.ca_file, None)
        .await
        .unwrap();
    let (status, content_type) = get_with_filler(&app, &mut send, 2000).await;
    assert_eq!(status, 431);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_an_early_answer_to_a_stream_whose_body_never_starts_ends_it_without_waiting_for_drain_secs()
 {
    // drain_secs far beyond the wait below: only the body-start grace may hold the stream.
    let app = spawn_app_with(|s| s.limits.drain_secs = 60).await;
    let mut raw = RawH2::connect(&app).await;
    raw.open(1, &header_block("POST", "/api/dispatch-plans", &[]), false)
        .await;
    let frames = raw.until(|f| f.stream == 1 && f.kind == RST_STREAM).await;
    let on_stream: Vec<&Frame> = frames.iter().filter(|f| f.stream == 1).collect();
    // The answer whole (head, then its body to END_STREAM), then RST_STREAM(NO_ERROR).
    assert_eq!(
        on_stream.first().map(|f| f.kind),
        Some(HEADERS),
        "{on_stream:?}"
    );
    let end = on_stream
        .iter()
        .position(|f| f.flags & END_STREAM != 0 && f.kind != RST_STREAM);
    assert!(
        end.is_some_and(|end| end + 1 == on_stream.len() - 1),
        "{on_stream:?}"
    );
    assert_eq!(reset_code(on_stream.last().unwrap()), Some(NO_ERROR));
    assert!(
        on_stream
            .iter()
            .any(|f| f.kind == DATA && !f.payload.is_empty())
    );
    app.wait_for_metric(
        "dispatch_request_bodies_unread_total{outcome=\"not_started\"}",
        1.0,
    )
    .await;
}

/// How much of a body a new stream on `send` may send at once: the smaller of the stream's
/// window and the connection's, as the server set them. The stream then ends with an empty
/// body (a refused or malformed plan), and its answer is awaited.
async fn window_of_a_new_stream(
    app: &TestApp,
    send: &mut h2::client::SendRequest<bytes::Bytes>,
) -> usize {
    const WANTED: usize = 4 * 1024 * 1024;
    let request = http::Request::post(format!(
        "https://localhost:{}/api/dispatch-plans",
        app.https_port
    ))
    .header("content-type", "application/json")
    .body(())
    .unwrap();
    *send = send.clone().ready().await.unwrap();
    let (response, mut stream) = send.send_request(request, false).unwrap();
    stream.reserve_capacity(WANTED);
    let capacity = std::future::poll_fn(|cx| stream.poll_capacity(cx))
        .await
        .unwrap()
        .unwrap();
    stream.send_data(bytes::Bytes::new(), true).unwrap();
    let status = response.await.unwrap().status();
    assert!(status.is_client_error(), "{status}");
    capacity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_windows_stay_small_until_a_request_on_the_connection_authenticates() {
    let app = spawn_app_with(|_| {}).await;
    // Anonymous, and with a certificate no client is bound to: small windows, requests or not.
    let stranger = app.pki.workload("stranger");
    for identity in [None, Some(&stranger)] {
        let (mut send, _connection) =
            e2e::http::connect_h2(app.https_port, &app.pki.ca_file, identity)
                .await
                .unwrap();
        assert_eq!(get_with_filler(&app, &mut send, 10).await.0, 401);
        let window = window_of_a_new_stream(&app, &mut send).await;
        assert!(
            window <= 64 * 1024,
            "{window} bytes before proving anything"
        );
    }
    // A request that authenticates: the connection's window grows (to 2 MiB, a stream's to
    // 1 MiB).
    let worker = app.pki.workload("route-worker");
    let (mut send, _connection) =
        e2e::http::connect_h2(app.https_port, &app.pki.ca_file, Some(&worker))
            .await
            .unwrap();
    // The first stream authenticates (its empty plan is then refused as malformed).
    let before = window_of_a_new_stream(&app, &mut send).await;
    assert!(before <= 64 * 1024, "{before}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let window = window_of_a_new_stream(&app, &mut send).await;
        // (h2's client sends at most 400 KiB ahead of its own accord: its send buffer.)
        if window >= 256 * 1024 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{window} bytes after authenticating"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_a_connection_serves_two_streams_at_once_until_a_request_on_it_authenticates() {
    let app = spawn_app_with(|_| {}).await;
    let worker = app.pki.workload("route-worker");
    let (mut send, _connection) =
        e2e::http::connect_h2(app.https_port, &app.pki.ca_file, Some(&worker))
            .await
            .unwrap();
    let url = |path: &str| format!("https://localhost:{}{path}", app.https_port);
    // Two plans whose bodies have not ended: both streams are in flight, nothing has
    // authenticated yet (a request counts once it is answered).
    let mut open = Vec::new();
    for _ in 0..2 {
        let request = http::Request::post(url("/api/dispatch-plans"))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        send = send.clone().ready().await.unwrap();
        open.push(send.send_request(request, false).unwrap());
    }
    // A third stream waits in h2 until one of them ends.
    send = send.clone().ready().await.unwrap();
    let whoami = http::Request::get(url("/api/whoami")).body(()).unwrap();
    let (third, _) = send.send_request(whoami, true).unwrap();
    let mut third = Box::pin(third);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut third)
            .await
            .is_err(),
        "answered while two streams of a connection that proved nothing were in flight"
    );
    // One plan ends (an empty body: a malformed plan, answered and authenticated): the third
    // stream is served, and the connection is no longer held to two.
    let (first, mut body) = open.remove(0);
    body.send_data(bytes::Bytes::new(), true).unwrap();
    assert!(first.await.unwrap().status().is_client_error());
    let answered = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a stream ended")
        .unwrap();
    assert_eq!(answered.status(), 200);
}
