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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_sending_its_body_gets_408_and_nothing_is_stored() {
    let app = spawn_app_with(|s| s.limits.body_timeout_secs = 1).await;
    let body = e2e::plan("slow-body", 3).to_string().into_bytes();
    let mut connection = app.connect(None).await.unwrap();
    let request = Request::post("/api/dispatch-plans")
        .raw_body("application/json", body.clone())
        .api_key(app.key("route-worker"));
    let response = connection.send_partial(request, 10).await.unwrap();
    response.assert_problem(408, "body-timeout");
    assert!(
        connection.closed_within(Duration::from_secs(5)).await,
        "the connection is closed after a body timeout"
    );
    assert_eq!(
        app.metric("dispatch_request_bodies_unread_total{outcome=\"timed_out\"}")
            .await,
        1.0
    );
    assert_eq!(app.plan_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_within_the_drain_bound_is_read_and_the_connection_stays_usable() {
    let app = spawn_app_with(|s| s.limits.drain_bytes = 200_000).await;
    let mut connection = app.connect(None).await.unwrap();
    // Anonymous: refused before the body is read; the body is then drained.
    let refused = connection
        .send(
            Request::post("/api/dispatch-plans").raw_body("application/json", vec![b'x'; 150_000]),
        )
        .await
        .unwrap();
    refused.assert_problem(401, "unauthenticated");
    let next = connection
        .send(Request::get("/api/whoami").api_key(app.key("route-worker")))
        .await
        .unwrap();
    assert_eq!(
        next.status, 200,
        "the same connection serves the next request"
    );
    assert_eq!(
        app.metric("dispatch_request_bodies_unread_total{outcome=\"drained\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_past_the_drain_bound_gets_its_answer_then_the_connection_is_closed() {
    let app = spawn_app_with(|s| s.limits.drain_bytes = 100_000).await;
    let mut connection = app.connect(None).await.unwrap();
    let refused = connection
        .send(
            Request::post("/api/dispatch-plans").raw_body("application/json", vec![b'x'; 150_000]),
        )
        .await
        .unwrap();
    refused.assert_problem(401, "unauthenticated");
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(connection.closed_within(Duration::from_secs(5)).await);
    assert_eq!(
        app.metric("dispatch_request_bodies_unread_total{outcome=\"cut\"}")
            .await,
        1.0
    );
}
