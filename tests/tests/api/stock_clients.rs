//! Every early answer to a request with a body reaches stock clients whole: curl (HTTP/2 and
//! HTTP/1.1, Debian's 7.88 with nghttp2), Python's httpx (over python3-h2, and HTTP/1.1) and
//! Go's net/http (HTTP/2 and HTTP/1.1, Debian's golang-go), 50 requests per client and refusal
//! class, bodies from 100 bytes to past the body limit.
//! A framing error, a reset stream or a cut connection is a failure: the refusal's problem body
//! is what tells the client what to do.

use e2e::stock::{self, Client, EVERY_CLIENT, StockRequest};
use e2e::{Identity, TestApp, plan, spawn_app, spawn_app_with, submit};

const PER_CLIENT: usize = 50;
const PLANS: &str = "/api/dispatch-plans";

/// Body sizes from 100 B to past the test app's 64 KiB body limit, up to 600 KB (below the
/// 1 MiB drain bound: past it, a refusal closes the connection instead).
fn size(i: usize) -> usize {
    const SIZES: [usize; 7] = [100, 1_000, 10_000, 60_000, 100_000, 300_000, 600_000];
    SIZES[i % SIZES.len()]
}

fn filler(i: usize) -> String {
    "x".repeat(size(i))
}

/// Runs `request(i)` for i in 0..50 through every stock client and asserts that each answer
/// arrived whole with `status` and its problem document of type `kind`, over the protocol
/// asked for.
async fn every_client_receives_whole(
    app: &TestApp,
    identity: Option<&Identity>,
    (status, kind): (u16, &str),
    request: impl Fn(usize) -> StockRequest,
) {
    let want_type = format!("urn:dispatch-api:problem:{kind}");
    let requests: Vec<StockRequest> = (0..PER_CLIENT).map(request).collect();
    for client in EVERY_CLIENT {
        let seen = stock::run(app, client, identity, &requests).await;
        let want_version = client.http_version();
        for (i, seen) in seen.iter().enumerate() {
            let what = format!(
                "{client:?}, request {i} ({} bytes): {seen:?}",
                requests[i].body.len()
            );
            assert_eq!(seen.error, None, "{what}");
            assert_eq!(seen.status, status, "{what}");
            assert_eq!(seen.http_version, want_version, "{what}");
            assert_eq!(
                seen.problem_type.as_deref(),
                Some(want_type.as_str()),
                "{what}"
            );
        }
    }
}

fn json_post(path: &str, body: String) -> StockRequest {
    StockRequest::new("POST", path, body).header("Content-Type", "application/json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_401_to_an_anonymous_request_with_a_body_reaches_curl_httpx_and_go_whole() {
    let app = spawn_app().await;
    every_client_receives_whole(&app, None, (401, "unauthenticated"), |i| {
        json_post(PLANS, filler(i))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_403_to_a_workers_admin_call_with_a_body_reaches_curl_httpx_and_go_whole() {
    let app = spawn_app().await;
    let key = app.key("route-worker").to_owned();
    every_client_receives_whole(&app, None, (403, "forbidden"), |i| {
        StockRequest::new("PUT", "/admin/clients/route-worker/mode", filler(i))
            .header("Content-Type", "application/json")
            .header("X-Api-Key", &key)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_403_to_a_certificate_without_the_scope_reaches_curl_httpx_and_go_whole() {
    let app = spawn_app().await;
    let worker = app.pki.workload("route-worker");
    every_client_receives_whole(&app, Some(&worker), (403, "forbidden"), |i| {
        StockRequest::new("PUT", "/admin/clients/key-only/disabled", filler(i))
            .header("Content-Type", "application/json")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_404_to_a_request_with_a_body_reaches_curl_httpx_and_go_whole() {
    let app = spawn_app().await;
    let key = app.key("route-worker").to_owned();
    every_client_receives_whole(&app, None, (404, "not-found"), |i| {
        json_post("/api/no-such-thing", filler(i)).header("X-Api-Key", &key)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_405_to_a_request_with_a_body_reaches_curl_httpx_and_go_whole() {
    let app = spawn_app().await;
    let key = app.key("route-worker").to_owned();
    every_client_receives_whole(&app, None, (405, "method-not-allowed"), |i| {
        StockRequest::new("PUT", PLANS, filler(i))
            .header("Content-Type", "application/json")
            .header("X-Api-Key", &key)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_413_to_a_body_past_the_limit_reaches_curl_httpx_and_go_whole() {
    let app = spawn_app().await;
    let key = app.key("route-worker").to_owned();
    let limit = app.settings.limits.max_body_bytes;
    every_client_receives_whole(&app, None, (413, "payload-too-large"), |i| {
        // From one byte past the limit to nearly ten times it.
        let bytes = [limit + 1, limit * 2, 300_000, 600_000][i % 4];
        json_post(PLANS, "x".repeat(bytes)).header("X-Api-Key", &key)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_415_to_a_body_that_is_not_json_reaches_curl_httpx_and_go_whole() {
    let app = spawn_app().await;
    let key = app.key("route-worker").to_owned();
    every_client_receives_whole(&app, None, (415, "unsupported-media-type"), |i| {
        StockRequest::new("POST", PLANS, filler(i))
            .header("Content-Type", "text/plain")
            .header("X-Api-Key", &key)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_422_to_an_invalid_plan_reaches_curl_httpx_and_go_whole() {
    let app = spawn_app().await;
    let key = app.key("route-worker").to_owned();
    let max_stops = app.settings.limits.max_stops;
    every_client_receives_whole(&app, None, (422, "invalid-plan"), |i| {
        // Too many stops: from one past the limit to bodies near the 64 KiB limit.
        let stops = [max_stops + 1, 200, 500, 700][i % 4];
        let body = plan(&format!("too-long-{i}"), stops).to_string();
        json_post(PLANS, body).header("X-Api-Key", &key)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_503_of_a_full_database_reaches_curl_httpx_and_go_whole() {
    // The size cap is a SQLite file's (database.max_size_bytes): SQLite on either suite run.
    let app = spawn_app_with(|s| {
        s.database.url = None;
        s.database.max_size_bytes = Some(400 * 1024);
    })
    .await;
    let key = app.key("route-worker").to_owned();
    // Fill it (bounded) until plans are refused.
    let mut filled = 0;
    loop {
        assert!(filled < 2_000, "the size cap never bit");
        let response = app
            .request(
                None,
                submit(&plan(&format!("fill-{filled}"), 50)).api_key(&key),
            )
            .await
            .unwrap();
        if response.status == 503 {
            break;
        }
        filled += 1;
    }
    every_client_receives_whole(&app, None, (503, "unavailable"), |i| {
        json_post(PLANS, plan(&format!("late-{i}"), 50).to_string()).header("X-Api-Key", &key)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_a_body_past_the_drain_bytes_still_reaches_http2_clients_whole() {
    // HTTP/2 is bounded by time only: flow control paces the client, and a reset stream is what
    // curl and httpx lose the answer to.
    let app = spawn_app_with(|s| s.limits.drain_bytes = 100_000).await;
    let requests: Vec<StockRequest> = (0..10)
        .map(|i| {
            json_post(
                PLANS,
                "x".repeat(if i % 2 == 0 { 300_000 } else { 1_500_000 }),
            )
        })
        .collect();
    for client in [Client::CurlHttp2, Client::PythonHttp2, Client::GoHttp2] {
        for (i, seen) in stock::run(&app, client, None, &requests)
            .await
            .iter()
            .enumerate()
        {
            let what = format!("{client:?}, request {i}: {seen:?}");
            assert_eq!(seen.error, None, "{what}");
            assert_eq!(seen.status, 401, "{what}");
            assert_eq!(
                seen.problem_type.as_deref(),
                Some("urn:dispatch-api:problem:unauthenticated"),
                "{what}"
            );
        }
    }
}
