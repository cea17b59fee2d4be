//! Hostile connections: many that never speak and some that speak one byte at a time are cut
//! off by the handshake timeout, and a well-behaved client is served meanwhile.

use std::time::Duration;

use e2e::{Request, spawn_app_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE: usize = 300;
const SLOW: usize = 20;

/// Whether the server closes `stream` (end of stream or a reset) within `wait`.
async fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0u8; 64];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut buffer)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_byte_at_a_time_connections_are_cut_off_while_a_good_client_is_served() {
    let app = spawn_app_with(|s| {
        s.server.tls_handshake_timeout_ms = 1_000;
        s.server.client_request_timeout_ms = 1_000;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(
            TcpStream::connect(("127.0.0.1", app.https_port))
                .await
                .unwrap(),
        );
    }
    // A TLS record header, one byte every 300 ms: never a complete ClientHello.
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let port = app.https_port;
        slow.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            for byte in [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03] {
                if stream.write_all(&[byte]).await.is_err() {
                    return true; // cut off
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            closed_by_server(&mut stream, Duration::from_secs(5)).await
        }));
    }
    // The well-behaved client.
    for _ in 0..5 {
        let response = app
            .request(
                None,
                Request::get("/api/whoami").api_key(app.key("route-worker")),
            )
            .await
            .unwrap();
        assert_eq!(response.status, 200);
    }
    // Every silent connection is closed by the server.
    for mut stream in idle {
        assert!(
            closed_by_server(&mut stream, Duration::from_secs(10)).await,
            "an idle connection was left open"
        );
    }
    for task in slow {
        assert!(
            task.await.unwrap(),
            "a byte-at-a-time connection was left open"
        );
    }
    let response = app
        .request(
            None,
            Request::get("/api/whoami").api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "still serving afterwards");
}

#[tokio::test]
async fn oversized_request_headers_are_refused_without_harm() {
    let app = spawn_app_with(|_| {}).await;
    let huge = "x".repeat(64 * 1024);
    let outcome = app
        .request(None, Request::get("/api/whoami").header("X-Padding", &huge))
        .await;
    outcome.unwrap().assert_problem(431, "headers-too-large");
    let ok = app
        .request(
            None,
            Request::get("/api/whoami").api_key(app.key("route-worker")),
        )
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
}
