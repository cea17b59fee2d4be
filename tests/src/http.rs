//! A small HTTP/1.1 client over rustls that controls exactly which connection each request
//! uses, and plain HTTP for the operations listener. Clients trust only the given CA file.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::pki::Identity;

/// An HTTP/1.1 request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &'static str, path: &str) -> Self {
        Self {
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }
    pub fn put(path: &str) -> Self {
        Self::new("PUT", path)
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    pub fn api_key(self, key: &str) -> Self {
        self.header("X-Api-Key", key)
    }
    pub fn json(self, value: &Value) -> Self {
        self.raw_body("application/json", value.to_string().into_bytes())
    }
    pub fn raw_body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers
            .push(("Content-Type".into(), content_type.to_owned()));
        self.body = body;
        self
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Asserts an RFC 9457 problem with this status and type suffix.
    pub fn assert_problem(&self, status: u16, kind: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "body: {}",
            self.text()
        );
        let body = self.json();
        assert_eq!(
            body["type"],
            format!("urn:dispatch-api:problem:{kind}"),
            "body: {body}"
        );
        assert_eq!(body["status"], status);
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// One connection; requests on it reuse it (keep-alive).
pub struct Connection {
    stream: Box<dyn Stream>,
    buffer: Vec<u8>,
    /// SHA-256 of the certificate the server presented (TLS connections).
    pub server_fingerprint: Option<String>,
    /// Whether the TLS session was resumed rather than fully negotiated.
    pub resumed: bool,
}

pub fn client_config(ca_file: &Path, identity: Option<&Identity>) -> ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    }
}

/// A plain-HTTP GET on an operations listener.
pub async fn ops_get(port: u16, path: &str) -> Response {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("ops listener");
    let mut connection = Connection {
        stream: Box::new(stream),
        buffer: Vec::new(),
        server_fingerprint: None,
        resumed: false,
    };
    connection
        .send(Request::get(path))
        .await
        .expect("ops request")
}

pub async fn connect(
    port: u16,
    ca_file: &Path,
    identity: Option<&Identity>,
    server_name: &str,
) -> io::Result<Connection> {
    connect_with(
        port,
        Arc::new(client_config(ca_file, identity)),
        server_name,
    )
    .await
}

/// Connects with a given client configuration (sharing one lets sessions resume).
pub async fn connect_with(
    port: u16,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> io::Result<Connection> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    over_tcp(tcp, config, server_name).await
}

/// Connects from `source` (another loopback address, 127.x.y.z: "another network" for the
/// server, which sees the connection come from that address's /24).
pub async fn connect_from(
    source: std::net::IpAddr,
    port: u16,
    ca_file: &Path,
    identity: Option<&Identity>,
) -> io::Result<Connection> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(source, 0))?;
    let tcp = socket.connect(([127, 0, 0, 1], port).into()).await?;
    over_tcp(tcp, Arc::new(client_config(ca_file, identity)), "localhost").await
}

async fn over_tcp(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> io::Result<Connection> {
    let connector = TlsConnector::from(config);
    let name = ServerName::try_from(server_name.to_owned()).map_err(io::Error::other)?;
    let tls: TlsStream<TcpStream> = connector.connect(name, tcp).await?;
    let session = tls.get_ref().1;
    let server_fingerprint = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| devpki::sha256_hex(c));
    let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    Ok(Connection {
        stream: Box::new(tls),
        buffer: Vec::new(),
        server_fingerprint,
        resumed,
    })
}

/// An HTTP/2 connection (ALPN `h2`): the handle to open streams, and the connection's task,
/// which ends when the connection does.
pub async fn connect_h2(
    port: u16,
    ca_file: &Path,
    identity: Option<&Identity>,
) -> io::Result<(
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
)> {
    let mut config = client_config(ca_file, identity);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, connection) = h2::client::handshake(tls).await.map_err(io::Error::other)?;
    Ok((send, tokio::spawn(connection)))
}

impl Connection {
    pub async fn send(&mut self, request: Request) -> io::Result<Response> {
        let sent = request.body.len();
        self.send_partial(request, sent).await
    }

    /// Sends the request head (with the whole body's Content-Length) and only the first `sent`
    /// bytes of the body, then waits for the answer: a client that stops mid-body.
    pub async fn send_partial(&mut self, request: Request, sent: usize) -> io::Result<Response> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
            request.method,
            request.path,
            request.body.len()
        );
        for (name, value) in &request.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&request.body[..sent]);
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) =
                parsed.parse(&self.buffer).map_err(io::Error::other)?
            {
                let status = parsed.code.unwrap_or(0);
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while self.buffer.len() < head_len + length {
                    self.fill().await?;
                }
                let body = self.buffer[head_len..head_len + length].to_vec();
                self.buffer.drain(..head_len + length);
                return Ok(Response {
                    status,
                    headers,
                    body,
                });
            }
            self.fill().await?;
        }
    }

    /// Whether the server closed this connection (end of stream or reset) within `wait`.
    pub async fn closed_within(&mut self, wait: std::time::Duration) -> bool {
        let mut chunk = [0u8; 64];
        matches!(
            tokio::time::timeout(wait, self.stream.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// A free port on 127.0.0.1 for a server that starts later (another process, seconds on): one
/// below the kernel's ephemeral range, which no port-0 server and no outgoing connection of the
/// tests running beside it can take in between (as they could take a port-0 pick).
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 10_000.min(ephemeral_low / 2);
    for _ in 0..1000 {
        let port = low + random_u16() % (ephemeral_low - low);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Random enough to spread the tests' picks: std's hasher keys are random per process.
fn random_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u16
}
